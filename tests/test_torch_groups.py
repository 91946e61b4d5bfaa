"""How a PyTorch network's layers become agents (ganno.torch.networks.layerwise_param_groups):
one group per weight layer, normalisation layers and loose vectors in the group of the weight
layer before them, and the scheduler's description of its groups."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ganno.torch.networks import (  # noqa: E402
    TorchCNN1D,
    TorchMLP,
    describe_param_groups,
    layerwise_param_groups,
)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the identity skip, then ReLU (a ResNet basic block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResNetStyle(nn.Module):
    """A residual block on 4-channel images, global average pooling, a linear classifier."""

    def __init__(self, channels: int = 4, classes: int = 10):
        super().__init__()
        self.block = ResidualBlock(channels)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.block(x).mean((2, 3)))


class TransformerClassifier(nn.Module):
    """Token embedding, one torch.nn.TransformerEncoderLayer, mean pooling, a linear head."""

    def __init__(self, vocab=50, width=16, classes=3, norm_first=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.encoder = nn.TransformerEncoderLayer(
            width, 2, 32, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)).mean(1))


def _names(groups):
    return [(g["name"], g["param_names"]) for g in groups]


def _check_complete(model, groups):
    """Every trainable parameter in exactly one group, with its own name."""
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}
    names = dict(model.named_parameters())
    for g in groups:
        for n, p in zip(g["param_names"], g["params"], strict=True):
            assert names[n] is p


def test_a_resnet_block_gives_one_agent_per_convolution_and_the_classifier():
    """conv-BN-ReLU-conv-BN + skip, then linear: three agents (five modules own parameters);
    each BatchNorm's scale and shift are set with the convolution before it."""
    model = ResNetStyle()
    groups = layerwise_param_groups(model)
    assert _names(groups) == [
        ("block.conv1", ["block.conv1.weight", "block.bn1.weight", "block.bn1.bias"]),
        ("block.conv2", ["block.conv2.weight", "block.bn2.weight", "block.bn2.bias"]),
        ("fc", ["fc.weight", "fc.bias"]),
    ]
    _check_complete(model, groups)
    # the forward pass's order is the same here
    ordered = layerwise_param_groups(model, example_input=torch.randn(2, 4, 6, 6))
    assert _names(ordered) == _names(groups)
    # one group per module owning parameters (the previous default): five
    modules = layerwise_param_groups(model, by="module")
    assert [g["name"] for g in modules] == ["block.conv1", "block.bn1", "block.conv2",
                                            "block.bn2", "fc"]  # fmt: skip
    # the trace ran in eval mode and left the modes and BatchNorm statistics as they were
    assert model.training and int(model.block.bn1.num_batches_tracked) == 0


ATTENTION = ["encoder.self_attn.in_proj_weight", "encoder.self_attn.in_proj_bias"]
OUT_PROJ = ["encoder.self_attn.out_proj.weight", "encoder.self_attn.out_proj.bias"]
LINEAR1 = ["encoder.linear1.weight", "encoder.linear1.bias"]
LINEAR2 = ["encoder.linear2.weight", "encoder.linear2.bias"]
NORM1 = ["encoder.norm1.weight", "encoder.norm1.bias"]
NORM2 = ["encoder.norm2.weight", "encoder.norm2.bias"]


def test_a_transformer_block_gives_one_agent_per_projection():
    """Embedding, the fused QKV projection, the attention's output projection, the two
    feed-forward layers, the head: six agents. In registration order both LayerNorms follow
    linear2 (TransformerEncoderLayer registers them last); given an example batch, each joins
    the layer it follows in the computation: post-norm, norm1 after the attention and norm2
    after the feed-forward; pre-norm, norm1 before the attention (the embedding's group) and
    norm2 before the feed-forward (the attention output's group)."""
    tokens = torch.randint(0, 50, (2, 5))
    post = TransformerClassifier()
    registered = layerwise_param_groups(post)
    assert _names(registered) == [
        ("embed", ["embed.weight"]),
        ("encoder.self_attn", ATTENTION),
        ("encoder.self_attn.out_proj", OUT_PROJ),
        ("encoder.linear1", LINEAR1),
        ("encoder.linear2", LINEAR2 + NORM1 + NORM2),
        ("head", ["head.weight", "head.bias"]),
    ]
    _check_complete(post, registered)
    assert _names(layerwise_param_groups(post, example_input=tokens)) == [
        ("embed", ["embed.weight"]),
        ("encoder.self_attn", ATTENTION),
        ("encoder.self_attn.out_proj", OUT_PROJ + NORM1),
        ("encoder.linear1", LINEAR1),
        ("encoder.linear2", LINEAR2 + NORM2),
        ("head", ["head.weight", "head.bias"]),
    ]
    pre = TransformerClassifier(norm_first=True)
    assert _names(layerwise_param_groups(pre, example_input=tokens)) == [
        ("embed", ["embed.weight"] + NORM1),
        ("encoder.self_attn", ATTENTION),
        ("encoder.self_attn.out_proj", OUT_PROJ + NORM2),
        ("encoder.linear1", LINEAR1),
        ("encoder.linear2", LINEAR2),
        ("head", ["head.weight", "head.bias"]),
    ]


def test_a_norm_before_the_first_weight_layer_joins_the_first_group():
    """And a module of another kind owning a matrix is a layer; one owning vectors joins the
    layer before it; a tied weight is grouped once; options reach every group."""

    class Scale(nn.Module):  # loose vector parameters (like PReLU's)
        def __init__(self, n):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(n))

        def forward(self, x):
            return x * self.gain

    class Custom(nn.Module):  # a custom layer owning a matrix
        def __init__(self, n):
            super().__init__()
            self.matrix = nn.Parameter(torch.eye(n))

        def forward(self, x):
            return x @ self.matrix

    model = nn.Sequential(
        nn.LayerNorm(8), nn.Linear(8, 8), Scale(8), Custom(8), nn.GroupNorm(2, 8), nn.Linear(8, 8)
    )
    model[5].weight = model[1].weight  # tied
    groups = layerwise_param_groups(model, weight_decay=0.1)
    assert _names(groups) == [
        ("1", ["0.weight", "0.bias", "1.weight", "1.bias", "2.gain"]),
        ("3", ["3.matrix", "4.weight", "4.bias"]),
        ("5", ["5.bias"]),
    ]
    assert all(g["weight_decay"] == 0.1 for g in groups)
    _check_complete(model, groups)
    with pytest.raises(ValueError, match="by="):
        layerwise_param_groups(model, by="layer")
    only_norm = nn.Sequential(nn.LayerNorm(4))  # no weight layer: one group
    assert _names(layerwise_param_groups(only_norm)) == [("0", ["0.weight", "0.bias"])]


def test_the_networks_of_the_experiments_keep_their_groups():
    """TorchMLP and TorchCNN1D have no norms: one group per Linear / Conv1d, as before."""
    mlp = layerwise_param_groups(TorchMLP(40, 3, 8, 10))
    assert _names(mlp) == [(f"layers.{i}", [f"layers.{i}.weight", f"layers.{i}.bias"])
                           for i in range(3)]  # fmt: skip
    cnn = layerwise_param_groups(TorchCNN1D(40, 1, (4, 8), 5, 10))
    assert [g["name"] for g in cnn] == ["convs.0", "convs.1", "head"]


def test_the_scheduler_describes_its_agents():
    """describe_groups(): one line per agent (group), with its parameters and current rate;
    groups given without names (as the user built them) are described by their shapes."""
    import ganno.torch as gt

    model = ResNetStyle()
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.05)
    sched = gt.GannoScheduler(optimizer, gt.pretrained_policy(), val_loss_fn=lambda: 1.0)
    text = sched.describe_groups()
    print(text)
    lines = text.splitlines()
    assert len(lines) == 3 == sched.num_layers
    assert lines[0].startswith("agent 0: block.conv1 (152 weights, lr ")
    assert lines[0].endswith(
        "block.conv1.weight [4, 4, 3, 3], block.bn1.weight [4], block.bn1.bias [4]"
    )
    assert lines[2].endswith("fc.weight [10, 4], fc.bias [10]")
    as_given = torch.optim.SGD(
        [{"params": list(model.block.parameters())}, {"params": list(model.fc.parameters())}],
        lr=0.05,
    )
    sched = gt.GannoScheduler(as_given, gt.pretrained_policy(), val_loss_fn=lambda: 1.0)
    assert sched.num_layers == 2
    assert describe_param_groups(as_given.param_groups).splitlines()[1] == (
        "agent 1: group 1 (50 weights): [10, 4], [10]"
    )
