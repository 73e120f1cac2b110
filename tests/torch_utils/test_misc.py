"""torch_utils.misc: shapes, constants, weight copying and the infinite sampler."""

import re

import numpy as np
import pytest
import torch

from torch_utils import misc


def test_assert_shape():
    x = torch.zeros(2, 3, 4)
    misc.assert_shape(x, [2, None, 4])
    with pytest.raises(AssertionError, match="dimension 1: got 3, expected 5"):
        misc.assert_shape(x, [2, 5, 4])
    with pytest.raises(AssertionError, match="number of dimensions"):
        misc.assert_shape(x, [2, 3])


def test_constant_is_cached_per_value_dtype_and_shape():
    a = misc.constant([1, 2, 3], dtype=torch.float32)
    assert a is misc.constant(np.array([1, 2, 3]), dtype=torch.float32)
    assert a.tolist() == [1.0, 2.0, 3.0] and a.dtype == torch.float32
    assert misc.constant([1, 2, 4], dtype=torch.float32) is not a
    assert misc.constant([1, 2, 3], dtype=torch.float64) is not a
    b = misc.constant(0.5, shape=[2, 3])
    assert b.shape == (2, 3) and b.is_contiguous() and torch.all(b == 0.5)
    c = misc.constant(1.0, shape=[1, 3, 2, 2], memory_format=torch.channels_last)
    assert c.is_contiguous(memory_format=torch.channels_last)


def _offsets_fill_a_span(t: torch.Tensor) -> bool:
    """Brute force: every element's storage offset is distinct and together they fill one unbroken range."""
    index = np.indices(t.shape).reshape(t.ndim, t.numel())
    offsets = (np.array(t.stride(), dtype=np.int64).reshape(t.ndim, 1) * index).sum(0)
    return len(set(offsets.tolist())) == t.numel() and offsets.max() - offsets.min() + 1 == t.numel()


def test_is_dense_matches_brute_force_over_layouts():
    x = torch.zeros(2, 3, 4, 5)
    layouts = {
        "contiguous": x,
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "permuted": x.permute(3, 1, 0, 2),
        "transposed 2-D": torch.zeros(6, 7).t(),
        "size-1 dims": torch.zeros(1, 3, 1, 5).as_strided([1, 3, 1, 5], [99, 5, 7, 1]),
        "sliced with a gap": x[:, :, :, ::2],
        "narrowed": x[:, 1:],
        "expanded": torch.zeros(3, 1).expand(3, 4),
        "overlapping": torch.zeros(10).as_strided([4, 3], [1, 1]),
        "one element": torch.zeros(()),
    }
    verdicts = {name: misc.is_dense(t) for name, t in layouts.items()}
    assert verdicts == {name: _offsets_fill_a_span(t) for name, t in layouts.items()}
    assert [name for name, dense in verdicts.items() if not dense] == [
        "sliced with a gap",
        "narrowed",
        "expanded",
        "overlapping",
    ]


class _Net(torch.nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))
        self.register_buffer("scale", torch.ones(2))

    def forward(self, x):
        return self.body(x) * self.scale, x.sum()


def test_copy_params_and_buffers_by_name():
    torch.manual_seed(0)
    src, dst = _Net(), _Net()
    src.scale.fill_(3.0)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    for (name, a), (_, b) in zip(misc.named_params_and_buffers(src), misc.named_params_and_buffers(dst)):
        assert torch.equal(a, b), name
    assert dst.body[0].weight.requires_grad
    # Extra destination tensors are skipped unless require_all.
    dst.register_buffer("extra", torch.zeros(1))
    misc.copy_params_and_buffers(src, dst)
    with pytest.raises(KeyError, match="extra"):
        misc.copy_params_and_buffers(src, dst, require_all=True)
    with pytest.raises(ValueError, match=re.escape("'body.0.weight' has shape (5, 4)")):
        misc.copy_params_and_buffers(_Net(width=5), dst)


def test_infinite_sampler_stream():
    dataset = list(range(10))
    first = [i for _, i in zip(range(10), misc.InfiniteSampler(dataset, seed=3))]
    assert sorted(first) == dataset and first != dataset  # the first pass is one permutation
    stream = [i for _, i in zip(range(60), misc.InfiniteSampler(dataset, seed=3))]
    assert stream == [i for _, i in zip(range(60), misc.InfiniteSampler(dataset, seed=3))]  # seeded
    assert stream[10:20] != first  # later passes are reshuffled
    assert stream != [i for _, i in zip(range(60), misc.InfiniteSampler(dataset, seed=4))]
    # Ranks take interleaved positions of the same global stream.
    ranks = [
        [i for _, i in zip(range(30), misc.InfiniteSampler(dataset, rank=r, num_replicas=2, seed=3))] for r in (0, 1)
    ]
    assert ranks[0] == stream[0::2] and ranks[1] == stream[1::2]
    plain = [i for _, i in zip(range(25), misc.InfiniteSampler(dataset, shuffle=False))]
    assert plain == (dataset * 3)[:25]
    with pytest.raises(ValueError, match="rank"):
        misc.InfiniteSampler(dataset, rank=2, num_replicas=2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("gpu", "'gpu' is not a device; expected cpu, cuda or cuda:N"),
        ("cuda:99", "this machine has"),
    ],
)
def test_device_option_refuses_what_the_machine_lacks(text, message):
    import click
    from click.testing import CliRunner

    @click.command()
    @click.option("--device", type=misc.DEVICE, default="cpu")
    def tool(device):
        click.echo(f"device {device!r}")

    assert CliRunner().invoke(tool, ["--device", "cpu"]).output == "device 'cpu'\n"
    result = CliRunner().invoke(tool, ["--device", text])
    assert result.exit_code == 2 and message in result.output
