"""Sampled gradient statistics of large tensors (ganno.torch.sampling): small tensors are read
whole (exactly the environment's features), large ones on a fixed random sample whose sums
estimate the whole tensor's, and the scheduler's gradient features on a large layer stay close to
the exact ones on the same training stream."""

from __future__ import annotations

import copy
from itertools import islice

import numpy as np
import pytest
import torch

import ganno
from ganno.feature_names import FEATURE_NAMES
from ganno.torch import GannoScheduler, layerwise_param_groups
from ganno.torch.sampling import BLOCK, GradientSample, WindowSums

GRADIENT_FEATURES = [FEATURE_NAMES.index(n) for n in ("log_grad_norm", "grad_cosine",
                                                      "log_grad_noise")]  # fmt: skip


def test_small_tensors_are_read_whole_and_large_ones_estimate_their_sums():
    torch.manual_seed(0)
    small, large = torch.randn(300, 300), torch.randn(1000, 784)  # 90,000 and 784,000 entries
    large[:, :100] *= 10.0  # uneven columns, as an input layer's
    sample = GradientSample([small, large])
    assert sample.sampled == 1 and sample.blocks[0] is None
    small_read, large_read = sample.read([small, large])
    assert small_read is small  # no copy: the exact path costs what it did
    assert large_read.shape == sample.shapes[1] == (len(sample.blocks[1]), BLOCK)
    assert len(sample.blocks[1]) == pytest.approx(784_000 / BLOCK / 16, abs=1)
    exact = float(large.square().sum())
    assert float(large_read.square().sum()) == pytest.approx(exact, rel=0.05)
    other = large + torch.randn_like(large)
    dot = float((large * other).sum())
    assert float((large_read * sample.read([small, other])[1]).sum()) == pytest.approx(
        dot, rel=0.05
    )
    # the same entries every time, and none sampled when asked for none
    assert torch.equal(sample.read([small, large])[1], large_read)
    assert GradientSample([small, large], fraction=None).sampled == 0
    assert GradientSample([small, large], above=10**6).sampled == 0
    with pytest.raises(ValueError, match="a fraction in"):
        GradientSample([large], fraction=0.0)


def _stream(steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(784, 10, generator=g)
    for _ in range(steps):
        x = torch.randn(64, 784, generator=g)
        yield x, (x @ teacher).argmax(1)


def test_on_a_large_layer_the_gradient_features_stay_close_to_the_exact_ones():
    """Two schedulers watch the same training (one drives it, the other only observes): every
    decision's gradient features of the sampled one are within 0.05 of the exact one's (the
    features are log10 / 4 of norms and a cosine; measured: at most 0.003 on the norm, 0.024 on
    the cosine, 0.002 on the noise), the others are equal."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )  # the first layer's weight has 200,704 entries: sampled
    # the shipped actor on an lr0 base: a DoG base drives this random stream to divergence
    policy = _on_an_lr0_base(ganno.pretrained_policy())
    steps = 400
    drive = torch.optim.SGD(layerwise_param_groups(model), lr=1e-2)
    watch = torch.optim.SGD(layerwise_param_groups(model), lr=1e-2)  # never steps
    val_x, val_y = next(_stream(1, seed=1))
    loss_fn = torch.nn.functional.cross_entropy

    def val_loss():
        with torch.no_grad():
            return loss_fn(model(val_x), val_y)

    read = {"val_loss_fn": val_loss, "total_steps": steps, "gradient_statistics": "read"}
    exact = GannoScheduler(drive, policy, gradient_sample=None, **read)
    sampled = GannoScheduler(watch, policy, **read)
    assert exact.gradient_sample.sampled == 0 and sampled.gradient_sample.sampled == 1
    for x, y in _stream(steps):
        drive.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        exact.observe_gradients(loss)
        sampled.observe_gradients(loss)
        drive.step()
        exact.step()
        sampled.step()
    a = np.stack([h["observation"].numpy() for h in exact.history])
    b = np.stack([h["observation"].numpy() for h in sampled.history])
    assert a.shape == b.shape and len(a) == policy.config["env"]["num_decisions"] + 1
    diff = np.abs(a - b)[:, 0, :]  # the sampled layer
    assert diff[:, GRADIENT_FEATURES].max() < 0.05, diff[:, GRADIENT_FEATURES].max(axis=0)
    others = [
        i
        for i, n in enumerate(exact.feature_names)
        if i not in GRADIENT_FEATURES and n not in ("log_lr", "prev_action", "log_lr_scale")
    ]  # the rates are each scheduler's own decisions
    np.testing.assert_allclose(np.abs(a - b)[:, :, others], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(a - b)[:, 1:, GRADIENT_FEATURES], 0.0, atol=1e-6)
    # and the policy decides the same (measured: every one of the 40 decisions of both layers)
    same = [
        x["actions"] == y["actions"]
        for x, y in zip(exact.history, sampled.history, strict=True)
        if x["actions"] is not None
    ]
    assert np.mean(same) >= 0.9, np.mean(same)
    # a checkpoint carries the sample's sums and resumes only under the same sampling (the
    # default "auto" resumes it with the gradients read, as they were taken)
    state = sampled.state_dict()
    GannoScheduler(watch, policy, val_loss_fn=val_loss, total_steps=steps).load_state_dict(state)
    with pytest.raises(ValueError, match="another setting"):
        GannoScheduler(
            watch, policy, val_loss_fn=val_loss, total_steps=steps, gradient_sample=None
        ).load_state_dict(state)


def test_dogs_step_size_from_the_sample_stays_close_to_the_exact_one():
    """A DoG-base policy's step size (ganno.torch.DogStepSize) reads the weights and gradients on
    the scheduler's sample: on the large layer's training stream it stays within 2% of the step
    size from every entry, 1% over the last 50 of 200 steps (measured: at most 1.0%, and 0.4%)."""
    from ganno.torch.dog import DogStepSize

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    params = list(model.parameters())
    exact = DogStepSize(1e-3, GradientSample(params, fraction=None))
    sampled = DogStepSize(1e-3, GradientSample(params))
    assert sampled.sample.sampled == 1
    etas = []
    for x, y in _stream(200):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads = [p.grad for p in params]
        a = exact.update(params, torch._foreach_norm(exact.sample.read(grads)))
        b = sampled.update(params, torch._foreach_norm(sampled.sample.read(grads)))
        etas.append((a, b))
        with torch.no_grad():
            for p in params:
                p -= a * p.grad
    etas = np.array(etas)
    assert etas[0, 0] == etas[0, 1] == pytest.approx(1e-3)  # the first step is lr0
    assert etas[-1, 0] > 5 * etas[1, 0]  # the step size grew: a test of something
    np.testing.assert_allclose(etas[:, 1], etas[:, 0], rtol=0.02)
    np.testing.assert_allclose(etas[-50:, 1], etas[-50:, 0], rtol=0.01)


def test_window_sums_equal_the_read_gradients_sums_and_resume():
    """WindowSums (one flat buffer, a few calls a step) gives what adding ``GradientSample.read``
    per tensor gives: the mean gradient and each tensor's summed squared norms, the sampled
    tensor's scaled; its views survive the next interval; state/load restores it mid-window."""
    torch.manual_seed(0)
    shapes = [(300, 300), (300,), (1000, 784), (10, 1000)]  # 784,000 entries: sampled
    tensors = [torch.zeros(s) for s in shapes]
    sample = GradientSample(tensors)
    window = WindowSums(sample, tensors)
    steps = [[torch.randn(s) for s in shapes] for _ in range(3)]
    steps[1][2] = steps[1][2].t().contiguous().t()  # a non-contiguous gradient is read alike
    for grads in steps:
        window.add(grads)
    state = window.state()
    mean, squares = window.finish(3)
    reads = [sample.read([g.clone() for g in grads]) for grads in steps]
    for j in range(len(shapes)):
        expected = sum(r[j] for r in reads) / 3
        assert mean[j].shape == sample.shapes[j]
        torch.testing.assert_close(mean[j], expected, rtol=1e-5, atol=1e-6)
        norms = sum(float(r[j].square().sum()) for r in reads)
        assert float(squares[j]) == pytest.approx(norms, rel=1e-5)
        torch.testing.assert_close(state[0][j], expected * 3, rtol=1e-5, atol=1e-5)
    kept = [m.clone() for m in mean]
    window.next_interval()
    window.add(steps[0])
    assert all(torch.equal(m, k) for m, k in zip(mean, kept, strict=True))  # the other buffer
    restored = WindowSums(sample, tensors)
    restored.load(*window.state())
    torch.testing.assert_close(restored.finish(1)[0][2], window.finish(1)[0][2])
    assert float(sum(restored.state()[1])) == pytest.approx(float(sum(window.state()[1])))


def test_read_into_a_flat_buffer_is_read_unscaled_whatever_the_dtype():
    """GradientSample.read_into writes what read returns (of the tensors in float32), before
    read's scaling, into the slices views() cuts from one flat float32 buffer, whatever the
    tensors' dtype."""
    torch.manual_seed(0)
    tensors = [torch.randn(300, 300), torch.randn(1000, 784), torch.randn(7)]
    sample = GradientSample(tensors)
    scales = sample.entry_scales()
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        cast = [t.to(dtype) for t in tensors]
        flat = torch.full((len(scales),), float("nan"))
        sample.read_into(cast, sample.views(flat))
        expected = torch.cat([r.reshape(-1) for r in sample.read([t.float() for t in cast])])
        assert torch.equal(flat * scales, expected), dtype  # read's float32 scaling, bitwise


def _on_an_lr0_base(policy):
    """``policy`` with ``env.base_step_size: lr0`` (its actor unchanged)."""
    config = copy.deepcopy(policy.config)
    config["env"]["base_step_size"] = "lr0"
    return type(policy)(policy.params, config, policy.normaliser)


def test_a_dog_base_reads_its_norms_from_the_sampled_window():
    """The shipped policy (a DoG base) on a layer large enough to be sampled: DoG's step size
    takes the staged step's norms from the window's sample (a tuple from torch._foreach_norm
    once broke this)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=1e-3)
    val_x, val_y = next(_stream(1, seed=1))
    loss_fn = torch.nn.functional.cross_entropy
    sched = GannoScheduler(
        optimizer,
        ganno.pretrained_policy(),
        val_loss_fn=lambda: loss_fn(model(val_x), val_y).detach(),
        total_steps=400,
    )
    assert sched.gradient_sample.sampled == 1 and sched.dog is not None
    for x, y in islice(_stream(400), 30):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        sched.observe_gradients(loss)
        optimizer.step()
        sched.step()
    assert sched.decisions > 1 and np.isfinite(sched.learning_rates.numpy()).all()
