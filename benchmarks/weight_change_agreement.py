"""How close are the gradient features estimated from the weights' changes
(``GannoScheduler(gradient_statistics="weight_changes")``, ``ganno.torch.weight_changes``) to the
ones read from every step's gradients, and how often does the policy decide the same on them?

The shipped policy drives PyTorch training in the pipeline's ``torch-eval`` loop
(``ganno.torch.evaluation.train_run``) with the gradients read, as by default; beside it, on the
same trajectory, the weight-change estimate is taken at every interval, and the policy is asked
what it would have chosen on that observation. Per task (the default config's MLP and 1-D CNN on
MNIST-1D, the MLP on digits), over lr0 1e-5 to 1 by decades and three seeds: the share of decisions
whose actions (every layer's) agree, and the three features' absolute errors (median and 99th
percentile; features are O(1): log10 / 4 of a norm or ratio, and a cosine). A run killed by the
policy contributes its decisions after the network died too.

    python benchmarks/weight_change_agreement.py [--seeds 100,101,102] [--lr0 1e-5,...,1]
"""

from __future__ import annotations

import time

import pandas as pd
import shipped_policy_runs as shared
import torch

import ganno.torch.evaluation as evaluation
from ganno.feature_names import FEATURE_NAMES
from ganno.torch import features
from ganno.torch.scheduler import GannoScheduler
from ganno.torch.weight_changes import WeightChangeStatistics

COLUMNS = {n: FEATURE_NAMES.index(n) for n in ("log_grad_norm", "grad_cosine", "log_grad_noise")}


class Shadowed(GannoScheduler):
    """The default scheduler (gradients read), with the weight-change estimate taken beside it."""

    def __init__(self, *args, **kwargs):
        self.records: list[dict] = []
        self._shadow = None
        self._shadow_prev = None
        super().__init__(*args, **kwargs)
        self._shadow = WeightChangeStatistics(self.gradient_sample, self._group_of, self.num_layers)
        self._set_interval()

    def _set_interval(self) -> None:
        super()._set_interval()
        if self._shadow is not None:
            self._shadow.start(self.steps, self._grad_start, self._end, self._flat)

    def observe_gradients(self, loss, val_loss=None) -> None:
        super().observe_gradients(loss, val_loss)  # step 0: the first decision sets the rates
        if not self.diverged and self.decisions > 0 and self._grad_start <= self.steps < self._end:
            self._shadow.observe(self.steps, self._flat)

    @torch.no_grad()
    def _end_interval(self, val_loss) -> None:
        interval = self._shadow.statistics(self._flat, self._span_rates())
        mean_grad = self._by_layer(interval.mean_grad)
        previous, self._shadow_prev = self._shadow_prev, mean_grad
        before = len(self.history)
        super()._end_interval(val_loss)
        if len(self.history) == before or self.history[-1]["actions"] is None or previous is None:
            return
        exact = self.history[-1]["observation"]
        # the estimate's gradient columns, by the features' own definitions (the other columns,
        # which need no gradient, are the exact observation's)
        stats = features.layer_statistics(
            mean_grad=mean_grad,
            prev_mean_grad=previous,
            weight_sq=interval.weight_sq,
            update_sq=interval.update_sq,
        )
        estimated = features.observe_statistics(
            stats,
            learning_rates=self.learning_rates,
            mean_sq_grad_norm=interval.mean_sq_grad_norm,
            train_loss=1.0,
            val_loss=1.0,
            prev_train_loss=1.0,
            prev_val_loss=1.0,
            step_count=0,
            num_decisions=1,
            prev_log2_factor=torch.zeros(self.num_layers),
        )
        view = exact.clone()
        for column in COLUMNS.values():
            view[:, column] = estimated[:, column]
        actions = self._policy_actions(view).tolist()
        record = {"agree": actions == self.history[-1]["actions"]}
        for name, column in COLUMNS.items():
            record[name] = float((view[:, column] - exact[:, column]).abs().max())
        self.records.append(record)


def main() -> None:
    parser = shared.parser(__doc__.split("\n\n")[0], "100,101,102", "1e-5,1e-4,1e-3,1e-2,1e-1,1")
    s = shared.setup(parser.parse_args())
    made: list[Shadowed] = []

    class Recorded(Shadowed):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    evaluation.GannoScheduler = Recorded  # train_run builds its scheduler from this name
    rows, start = [], time.perf_counter()
    for at in shared.starts(s):
        shared.run(at, s)  # the gradients read, as by default in torch-eval
        for record in made[-1].records:
            rows.append({"task": at.task, "lr0": at.lr0, **record})
    runs = pd.DataFrame(rows)
    print(f"{len(runs)} decisions compared, {time.perf_counter() - start:.0f} s")

    def summary(g: pd.DataFrame) -> pd.Series:
        out = {"decisions": len(g), "actions agree": f"{g['agree'].mean():.1%}"}
        for name in COLUMNS:
            out[f"{name} error (median / 99%)"] = (
                f"{g[name].median():.4f} / {g[name].quantile(0.99):.4f}"
            )
        return pd.Series(out)

    table = runs.groupby("task", sort=False).apply(summary, include_groups=False)
    print(table.reset_index().to_markdown(index=False))
    print(summary(runs).to_frame("all tasks").T.to_markdown())


if __name__ == "__main__":
    main()
