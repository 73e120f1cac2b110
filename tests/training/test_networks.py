"""training.networks: official state_dict layout (keys, shapes, buffers, order) and forward semantics.

The expected tables are written here from the official networks' rules, independently of the code under test.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from tolerances import rounding_tol

from training import networks

# ----------------------------------------------------------------------------------------------------------
# Expected tables from the official networks' rules: a list of (key, shape, is_buffer) in state_dict order.

RF = [4, 4]  # resample_filter: outer([1,3,3,1]) / 64


def _channels(res, base, cmax):
    return min(base // res, cmax)


def _expected_g(z_dim, c_dim, w_dim, res, img_ch, base, cmax, map_layers, arch):
    rows = []
    log2 = int(math.log2(res))
    C = lambda r: _channels(r, base, cmax)  # noqa: E731

    def syn_layer(prefix, cin, cout, r):
        rows.extend(
            [
                (f"{prefix}.weight", [cout, cin, 3, 3], False),
                (f"{prefix}.noise_strength", [], False),
                (f"{prefix}.bias", [cout], False),
                (f"{prefix}.resample_filter", RF, True),
                (f"{prefix}.noise_const", [r, r], True),
                (f"{prefix}.affine.weight", [cin, w_dim], False),
                (f"{prefix}.affine.bias", [cin], False),
            ]
        )

    def torgb(prefix, cin):
        rows.extend(
            [
                (f"{prefix}.weight", [img_ch, cin, 1, 1], False),
                (f"{prefix}.bias", [img_ch], False),
                (f"{prefix}.affine.weight", [cin, w_dim], False),
                (f"{prefix}.affine.bias", [cin], False),
            ]
        )

    for r in [2**i for i in range(2, log2 + 1)]:
        p = f"synthesis.b{r}"
        last = r == res
        if r == 4:
            rows.append((f"{p}.const", [C(4), 4, 4], False))
            rows.append((f"{p}.resample_filter", RF, True))
            syn_layer(f"{p}.conv1", C(4), C(4), 4)
        else:
            rows.append((f"{p}.resample_filter", RF, True))
            syn_layer(f"{p}.conv0", C(r // 2), C(r), r)
            syn_layer(f"{p}.conv1", C(r), C(r), r)
        if arch == "skip" or last:
            torgb(f"{p}.torgb", C(r))
        if arch == "resnet" and r > 4:
            rows.extend([(f"{p}.skip.weight", [C(r), C(r // 2), 1, 1], False), (f"{p}.skip.resample_filter", RF, True)])
    rows.append(("mapping.w_avg", [w_dim], True))
    embed = w_dim if c_dim > 0 else 0
    if c_dim > 0:
        rows.extend([("mapping.embed.weight", [w_dim, c_dim], False), ("mapping.embed.bias", [w_dim], False)])
    for i in range(map_layers):
        rows.extend(
            [
                (f"mapping.fc{i}.weight", [w_dim, z_dim + embed if i == 0 else w_dim], False),
                (f"mapping.fc{i}.bias", [w_dim], False),
            ]
        )
    return rows


def _expected_d(c_dim, res, img_ch, base, cmax, arch, mbstd_channels=1, map_layers=8):
    rows = []
    log2 = int(math.log2(res))
    C = lambda r: _channels(r, base, cmax)  # noqa: E731

    def conv(prefix, cin, cout, k, bias=True):
        rows.append((f"{prefix}.weight", [cout, cin, k, k], False))
        if bias:
            rows.append((f"{prefix}.bias", [cout], False))
        rows.append((f"{prefix}.resample_filter", RF, True))

    for r in [2**i for i in range(log2, 2, -1)]:
        p = f"b{r}"
        rows.append((f"{p}.resample_filter", RF, True))
        if r == res or arch == "skip":
            conv(f"{p}.fromrgb", img_ch, C(r), 1)
        conv(f"{p}.conv0", C(r), C(r), 3)
        conv(f"{p}.conv1", C(r), C(r // 2), 3)
        if arch == "resnet":
            conv(f"{p}.skip", C(r), C(r // 2), 1, bias=False)
    cmap = C(4) if c_dim > 0 else 0
    if c_dim > 0:
        rows.extend([("mapping.embed.weight", [cmap, c_dim], False), ("mapping.embed.bias", [cmap], False)])
        for i in range(map_layers):
            rows.extend([(f"mapping.fc{i}.weight", [cmap, cmap], False), (f"mapping.fc{i}.bias", [cmap], False)])
    if arch == "skip":
        conv("b4.fromrgb", img_ch, C(4), 1)
    conv("b4.conv", C(4) + mbstd_channels, C(4), 3)
    rows.extend(
        [
            ("b4.fc.weight", [C(4), C(4) * 16], False),
            ("b4.fc.bias", [C(4)], False),
            ("b4.out.weight", [cmap or 1, C(4)], False),
            ("b4.out.bias", [cmap or 1], False),
        ]
    )
    return rows


def _actual(module):
    buffers = {name for name, _ in module.named_buffers()}
    return [(k, list(v.shape), k in buffers) for k, v in module.state_dict().items()]


# The official res-64, c_dim=2, RGB table (channel_base 16384, G map=2, D mapping 8 layers),
# written out key by key. Format: key shape [B]. C[4..32]=512, C[64]=256.
FACT_SHEET_TABLE_G = """
synthesis.b4.const 512,4,4
synthesis.b4.resample_filter 4,4 B
synthesis.b4.conv1.weight 512,512,3,3
synthesis.b4.conv1.noise_strength -
synthesis.b4.conv1.bias 512
synthesis.b4.conv1.resample_filter 4,4 B
synthesis.b4.conv1.noise_const 4,4 B
synthesis.b4.conv1.affine.weight 512,512
synthesis.b4.conv1.affine.bias 512
synthesis.b4.torgb.weight 3,512,1,1
synthesis.b4.torgb.bias 3
synthesis.b4.torgb.affine.weight 512,512
synthesis.b4.torgb.affine.bias 512
synthesis.b8.resample_filter 4,4 B
synthesis.b8.conv0.weight 512,512,3,3
synthesis.b8.conv0.noise_strength -
synthesis.b8.conv0.bias 512
synthesis.b8.conv0.resample_filter 4,4 B
synthesis.b8.conv0.noise_const 8,8 B
synthesis.b8.conv0.affine.weight 512,512
synthesis.b8.conv0.affine.bias 512
synthesis.b8.conv1.weight 512,512,3,3
synthesis.b8.conv1.noise_strength -
synthesis.b8.conv1.bias 512
synthesis.b8.conv1.resample_filter 4,4 B
synthesis.b8.conv1.noise_const 8,8 B
synthesis.b8.conv1.affine.weight 512,512
synthesis.b8.conv1.affine.bias 512
synthesis.b8.torgb.weight 3,512,1,1
synthesis.b8.torgb.bias 3
synthesis.b8.torgb.affine.weight 512,512
synthesis.b8.torgb.affine.bias 512
synthesis.b16.resample_filter 4,4 B
synthesis.b16.conv0.weight 512,512,3,3
synthesis.b16.conv0.noise_strength -
synthesis.b16.conv0.bias 512
synthesis.b16.conv0.resample_filter 4,4 B
synthesis.b16.conv0.noise_const 16,16 B
synthesis.b16.conv0.affine.weight 512,512
synthesis.b16.conv0.affine.bias 512
synthesis.b16.conv1.weight 512,512,3,3
synthesis.b16.conv1.noise_strength -
synthesis.b16.conv1.bias 512
synthesis.b16.conv1.resample_filter 4,4 B
synthesis.b16.conv1.noise_const 16,16 B
synthesis.b16.conv1.affine.weight 512,512
synthesis.b16.conv1.affine.bias 512
synthesis.b16.torgb.weight 3,512,1,1
synthesis.b16.torgb.bias 3
synthesis.b16.torgb.affine.weight 512,512
synthesis.b16.torgb.affine.bias 512
synthesis.b32.resample_filter 4,4 B
synthesis.b32.conv0.weight 512,512,3,3
synthesis.b32.conv0.noise_strength -
synthesis.b32.conv0.bias 512
synthesis.b32.conv0.resample_filter 4,4 B
synthesis.b32.conv0.noise_const 32,32 B
synthesis.b32.conv0.affine.weight 512,512
synthesis.b32.conv0.affine.bias 512
synthesis.b32.conv1.weight 512,512,3,3
synthesis.b32.conv1.noise_strength -
synthesis.b32.conv1.bias 512
synthesis.b32.conv1.resample_filter 4,4 B
synthesis.b32.conv1.noise_const 32,32 B
synthesis.b32.conv1.affine.weight 512,512
synthesis.b32.conv1.affine.bias 512
synthesis.b32.torgb.weight 3,512,1,1
synthesis.b32.torgb.bias 3
synthesis.b32.torgb.affine.weight 512,512
synthesis.b32.torgb.affine.bias 512
synthesis.b64.resample_filter 4,4 B
synthesis.b64.conv0.weight 256,512,3,3
synthesis.b64.conv0.noise_strength -
synthesis.b64.conv0.bias 256
synthesis.b64.conv0.resample_filter 4,4 B
synthesis.b64.conv0.noise_const 64,64 B
synthesis.b64.conv0.affine.weight 512,512
synthesis.b64.conv0.affine.bias 512
synthesis.b64.conv1.weight 256,256,3,3
synthesis.b64.conv1.noise_strength -
synthesis.b64.conv1.bias 256
synthesis.b64.conv1.resample_filter 4,4 B
synthesis.b64.conv1.noise_const 64,64 B
synthesis.b64.conv1.affine.weight 256,512
synthesis.b64.conv1.affine.bias 256
synthesis.b64.torgb.weight 3,256,1,1
synthesis.b64.torgb.bias 3
synthesis.b64.torgb.affine.weight 256,512
synthesis.b64.torgb.affine.bias 256
mapping.w_avg 512 B
mapping.embed.weight 512,2
mapping.embed.bias 512
mapping.fc0.weight 512,1024
mapping.fc0.bias 512
mapping.fc1.weight 512,512
mapping.fc1.bias 512
"""

FACT_SHEET_TABLE_D = (
    """
b64.resample_filter 4,4 B
b64.fromrgb.weight 256,3,1,1
b64.fromrgb.bias 256
b64.fromrgb.resample_filter 4,4 B
b64.conv0.weight 256,256,3,3
b64.conv0.bias 256
b64.conv0.resample_filter 4,4 B
b64.conv1.weight 512,256,3,3
b64.conv1.bias 512
b64.conv1.resample_filter 4,4 B
b64.skip.weight 512,256,1,1
b64.skip.resample_filter 4,4 B
"""
    + "".join(
        f"""
b{r}.resample_filter 4,4 B
b{r}.conv0.weight 512,512,3,3
b{r}.conv0.bias 512
b{r}.conv0.resample_filter 4,4 B
b{r}.conv1.weight 512,512,3,3
b{r}.conv1.bias 512
b{r}.conv1.resample_filter 4,4 B
b{r}.skip.weight 512,512,1,1
b{r}.skip.resample_filter 4,4 B
"""
        for r in (32, 16, 8)
    )
    + """
mapping.embed.weight 512,2
mapping.embed.bias 512
"""
    + "".join(
        f"""
mapping.fc{i}.weight 512,512
mapping.fc{i}.bias 512
"""
        for i in range(8)
    )
    + """
b4.conv.weight 512,513,3,3
b4.conv.bias 512
b4.conv.resample_filter 4,4 B
b4.fc.weight 512,8192
b4.fc.bias 512
b4.out.weight 512,512
b4.out.bias 512
"""
)


def _parse_table(text):
    rows = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        key, shape, *flag = line.split()
        rows.append((key, [] if shape == "-" else [int(s) for s in shape.split(",")], flag == ["B"]))
    return rows


def _small_g(res=16, c_dim=0, img_ch=3, arch="skip", **synthesis_kwargs):
    synthesis_kwargs = dict(channel_base=256, channel_max=32, architecture=arch, **synthesis_kwargs)
    return networks.Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=res,
        img_channels=img_ch,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=synthesis_kwargs,
    )


def _small_d(res=16, c_dim=0, img_ch=3, arch="resnet", **kwargs):
    return networks.Discriminator(
        c_dim=c_dim,
        img_resolution=res,
        img_channels=img_ch,
        architecture=arch,
        channel_base=256,
        channel_max=32,
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------------------
# state_dict layout


def test_fact_sheet_res64_table_verbatim():
    torch.manual_seed(0)
    G = networks.Generator(
        z_dim=512,
        c_dim=2,
        w_dim=512,
        img_resolution=64,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=16384),
    )
    D = networks.Discriminator(c_dim=2, img_resolution=64, img_channels=3, channel_base=16384)
    assert _actual(G) == _parse_table(FACT_SHEET_TABLE_G)
    assert _actual(D) == _parse_table(FACT_SHEET_TABLE_D)
    assert G.num_ws == 10
    filt = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.equal(G.synthesis.b8.resample_filter, torch.outer(filt, filt) / 64)


G_CONFIGS = [  # res, c_dim, img_channels, architecture, channel_base, channel_max, mapping layers
    (32, 0, 1, "skip", 512, 64, 2),
    (64, 2, 3, "orig", 1024, 48, 1),
    (128, 2, 1, "resnet", 2048, 32, 3),
    (256, 0, 3, "skip", 4096, 64, 8),
]


@pytest.mark.parametrize("res,c_dim,img_ch,arch,base,cmax,map_layers", G_CONFIGS)
def test_generator_state_dict_matches_rules(res, c_dim, img_ch, arch, base, cmax, map_layers):
    G = networks.Generator(
        z_dim=24,
        c_dim=c_dim,
        w_dim=20,
        img_resolution=res,
        img_channels=img_ch,
        mapping_kwargs=dict(num_layers=map_layers),
        synthesis_kwargs=dict(channel_base=base, channel_max=cmax, architecture=arch),
    )
    assert _actual(G) == _expected_g(24, c_dim, 20, res, img_ch, base, cmax, map_layers, arch)
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    assert list(dict(G.named_children())) == ["synthesis", "mapping"]


D_CONFIGS = [  # res, c_dim, img_channels, architecture, channel_base, channel_max
    (32, 0, 1, "resnet", 512, 64),
    (64, 2, 3, "skip", 1024, 48),
    (128, 2, 1, "orig", 2048, 32),
    (256, 0, 3, "resnet", 4096, 64),
]


@pytest.mark.parametrize("res,c_dim,img_ch,arch,base,cmax", D_CONFIGS)
def test_discriminator_state_dict_matches_rules(res, c_dim, img_ch, arch, base, cmax):
    D = networks.Discriminator(
        c_dim=c_dim, img_resolution=res, img_channels=img_ch, architecture=arch, channel_base=base, channel_max=cmax
    )
    assert _actual(D) == _expected_d(c_dim, res, img_ch, base, cmax, arch)
    children = list(dict(D.named_children()))
    assert children == [f"b{2**i}" for i in range(int(math.log2(res)), 2, -1)] + (["mapping"] if c_dim else []) + ["b4"]


def test_mbstd_off_removes_one_input_channel_of_b4_conv():
    D = _small_d(epilogue_kwargs=dict(mbstd_num_channels=0))
    assert _actual(D) == _expected_d(0, 16, 3, 256, 32, "resnet", mbstd_channels=0)
    assert D.b4.conv.weight.shape[1] == D.b4.in_channels
    assert D(torch.randn(3, 3, 16, 16), None).shape == (3, 1)  # no group constraint without mbstd


def test_freeze_layers_turns_the_first_layers_into_buffers_with_the_same_keys():
    D = _small_d(res=32, block_kwargs=dict(freeze_layers=5))
    # Global layer order: b32.fromrgb, b32.conv0, b32.conv1, b32.skip, b16.conv0 | b16.conv1, ...
    frozen = {"b32.fromrgb", "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0"}
    params = {name for name, _ in D.named_parameters()}
    for prefix in frozen:
        assert f"{prefix}.weight" not in params
    assert "b16.conv1.weight" in params and "b8.skip.weight" in params
    # Frozen weights become buffers, so they move after resample_filter in the order, but keys and shapes stay.
    assert sorted((k, s) for k, s, _ in _actual(D)) == sorted((k, s) for k, s, _ in _actual(_small_d(res=32)))


def test_init_kwargs_rebuild_an_identical_layout():
    G = _small_g(res=32, c_dim=3, arch="resnet", num_fp16_res=2, conv_clamp=256)
    D = _small_d(
        res=32, c_dim=3, arch="skip", block_kwargs=dict(freeze_layers=2), epilogue_kwargs=dict(mbstd_group_size=2)
    )
    for net in (G, D):
        clone = type(net)(**net.init_kwargs)
        assert _actual(clone) == _actual(net)
    assert G.init_kwargs.synthesis_kwargs.num_fp16_res == 2
    assert D.init_kwargs.epilogue_kwargs == {"mbstd_group_size": 2}


def test_bad_resolution_is_rejected_with_its_value():
    with pytest.raises(ValueError, match="48"):
        _small_g(res=48)


# ----------------------------------------------------------------------------------------------------------
# Layers against float64 brute force


def test_fully_connected_layer_equalised_lr():
    torch.manual_seed(1)
    layer = networks.FullyConnectedLayer(5, 3, activation="lrelu", lr_multiplier=0.1, bias_init=0.5)
    x = torch.randn(4, 5)
    w = layer.weight.double() * 0.1 / math.sqrt(5)
    y = x.double() @ w.t() + layer.bias.double() * 0.1
    ref = F.leaky_relu(y, 0.2) * math.sqrt(2)
    # float32: 5-term dot products plus gains and bias (8 roundings) on sum |terms| times sqrt(2).
    magnitude = ((x.double().abs() @ w.abs().t()).max() + 0.05).item() * math.sqrt(2)
    assert torch.allclose(layer(x).double(), ref, rtol=0, atol=rounding_tol(torch.float32, 8, magnitude))
    assert torch.equal(layer.bias, torch.full([3], 0.5))  # stored as given: lr_multiplier applies at use


def _modconv_reference(x, weight, styles, demodulate):
    """Per-sample conv with an explicitly modulated (and demodulated) weight, in float64."""
    out = []
    for n in range(x.shape[0]):
        w = weight.double() * styles[n].double().reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(F.conv2d(x[n : n + 1].double(), w, padding=weight.shape[-1] // 2))
    return torch.cat(out)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_matches_brute_force(fused, demodulate):
    torch.manual_seed(2)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    y = networks.modulated_conv2d(x, weight, styles, padding=1, demodulate=demodulate, fused_modconv=fused)
    # float32: 4 * 3 * 3 = 36-term sums for the conv and for the demodulation's sum of squares, plus the
    # modulation's products (~80 roundings), on sum |terms| (the reference run on absolute values).
    magnitude = _modconv_reference(x.abs(), weight.abs(), styles.abs(), demodulate).max().item()
    assert torch.allclose(
        y.double(),
        _modconv_reference(x, weight, styles, demodulate),
        rtol=0,
        atol=rounding_tol(torch.float32, 80, magnitude),
    )


def test_modulated_conv2d_fused_equals_non_fused_with_upsampling_and_noise():
    torch.manual_seed(3)
    x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(6, 4, 3, 3), torch.randn(2, 4)
    noise = torch.randn(2, 1, 10, 10)
    f = networks.upfirdn2d.setup_filter([1, 3, 3, 1])
    kwargs = dict(noise=noise, up=2, padding=1, resample_filter=f, flip_weight=False)
    a = networks.modulated_conv2d(x, weight, styles, fused_modconv=True, **kwargs)
    b = networks.modulated_conv2d(x, weight, styles, fused_modconv=False, **kwargs)
    assert a.shape == (2, 6, 10, 10)
    # Both float32: 36-term conv and demodulation sums, the 4x4 up-filter and the noise (~100 roundings), on
    # sum |terms| (the same op on absolute values; the filter is positive).
    magnitude = (
        networks.modulated_conv2d(
            x.abs(), weight.abs(), styles.abs(), fused_modconv=False, **(kwargs | dict(noise=noise.abs()))
        )
        .max()
        .item()
    )
    assert torch.allclose(a, b, rtol=0, atol=rounding_tol(torch.float32, 100, magnitude))


def test_conv2d_layer_trainable_false_uses_buffers_and_same_output():
    torch.manual_seed(4)
    a = networks.Conv2dLayer(3, 4, 3, activation="lrelu")
    b = networks.Conv2dLayer(3, 4, 3, activation="lrelu", trainable=False)
    b.load_state_dict(a.state_dict())
    assert [n for n, _ in b.named_parameters()] == []
    assert {n for n, _ in b.named_buffers()} == {"resample_filter", "weight", "bias"}
    assert set(b.state_dict()) == set(a.state_dict())
    x = torch.randn(2, 3, 8, 8)
    ref = F.leaky_relu(F.conv2d(x.double(), a.weight.double() / math.sqrt(27), a.bias.double(), padding=1), 0.2)
    # float32: 27-term sums plus gains and bias (30 roundings) on sum |terms| times sqrt(2).
    magnitude = F.conv2d(x.double().abs(), a.weight.double().abs() / math.sqrt(27), padding=1).max().item()
    assert torch.allclose(
        b(x).double(), ref * math.sqrt(2), rtol=0, atol=rounding_tol(torch.float32, 30, magnitude * math.sqrt(2))
    )
    assert torch.equal(a(x), b(x))


def test_minibatch_std_matches_loop_over_groups():
    torch.manual_seed(5)
    x = torch.randn(6, 4, 3, 3)
    layer = networks.MinibatchStdLayer(group_size=3, num_channels=2)
    y = layer(x)
    assert y.shape == (6, 6, 3, 3) and torch.equal(y[:, :4], x)
    xd = x.double()
    for n in range(6):
        members = [m for m in range(6) if m % 2 == n % 2]  # sample n is in group n % (N/G)
        for f in range(2):
            group = xd[members][:, 2 * f : 2 * f + 2]
            std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            # float32: mean and variance over 3 members, sqrt, mean over 2 x 3 x 3 values (~30 roundings) of
            # squares up to 5^2 (N(0, 1) inputs), relative error halved by the sqrt.
            assert torch.allclose(
                y[n, 4 + f].double(), std.expand(3, 3), rtol=0, atol=rounding_tol(torch.float32, 30, 25)
            )


def test_minibatch_std_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="divisible"):
        networks.MinibatchStdLayer(group_size=4)(torch.randn(6, 2, 4, 4))


# ----------------------------------------------------------------------------------------------------------
# Generator and discriminator behaviour

# Two float32 evaluations of the small generator by different code paths (fused or not, channels-last or not)
# differ by rounding along the longest chain of operations: 2 mapping layers of 16 terms, 5 convs of up to
# 32 * 3 * 3 = 288-term sums plus as many for their demodulation, the 4x4 up-filters and to-RGB (about 3000
# roundings), on sums of |terms| of a few units (demodulated weights have unit norm).
_NETWORK_TOL = rounding_tol(torch.float32, 3000, 4)


@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
@pytest.mark.parametrize("img_ch", [1, 3])
def test_generator_forward_shape_and_range(arch, img_ch):
    torch.manual_seed(6)
    G = _small_g(res=16, c_dim=2, img_ch=img_ch, arch=arch)
    z, c = torch.randn(4, 16), F.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    img = G(z, c)
    assert img.shape == (4, img_ch, 16, 16) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    assert 0.05 < img.std().item() < 3 and img.abs().max().item() < 10


@pytest.mark.parametrize("arch", ["resnet", "skip", "orig"])
def test_discriminator_forward_conditional_and_not(arch):
    torch.manual_seed(7)
    img = torch.randn(4, 3, 16, 16)
    D0, D2 = _small_d(arch=arch), _small_d(arch=arch, c_dim=2)
    assert D0(img, None).shape == (4, 1)
    c = F.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    logits = D2(img, c)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()


def test_discriminator_projection_conditioning():
    torch.manual_seed(8)
    D = _small_d(c_dim=2)
    img, c = torch.randn(4, 3, 16, 16), torch.randn(4, 2)
    captured = {}
    D.b4.out.register_forward_hook(lambda m, i, o: captured.update(out=o))
    logits = D(img, c)
    cmap = D.mapping(None, c)
    expected = (captured["out"] * cmap).sum(dim=1, keepdim=True) / math.sqrt(D.b4.cmap_dim)
    # Both float32: a cmap_dim-term dot product and a scale, on sum |terms|.
    magnitude = (captured["out"].abs() * cmap.abs()).sum(dim=1).max().item() / math.sqrt(D.b4.cmap_dim)
    assert torch.allclose(logits, expected, rtol=0, atol=rounding_tol(torch.float32, D.b4.cmap_dim + 2, magnitude))


def test_truncation_psi_zero_gives_w_avg_and_cutoff_limits_it():
    torch.manual_seed(9)
    G = _small_g().eval()
    G.mapping.w_avg.copy_(torch.randn(16))
    z = torch.randn(3, 16)
    ws = G.mapping(z, None, truncation_psi=0)
    assert torch.equal(ws, G.mapping.w_avg.expand(3, G.num_ws, 16))  # lerp(start, end, 0) returns start exactly
    full = G.mapping(z, None)
    cut = G.mapping(z, None, truncation_psi=0, truncation_cutoff=2)
    assert torch.equal(cut[:, :2], G.mapping.w_avg.expand(3, 2, 16))
    assert torch.equal(cut[:, 2:], full[:, 2:])
    half = G.mapping(z, None, truncation_psi=0.5)
    # float32 lerp against (a + b) / 2: a subtraction, a product and an addition each, on |a| + |b|.
    magnitude = (full.abs() + G.mapping.w_avg.abs()).max().item()
    assert torch.allclose(half, (full + G.mapping.w_avg) / 2, rtol=0, atol=rounding_tol(torch.float32, 6, magnitude))


def test_w_avg_update_only_in_training_mode():
    torch.manual_seed(10)
    G = _small_g()
    z = torch.randn(5, 16)
    G.mapping.w_avg.copy_(torch.randn(16))
    before = G.mapping.w_avg.clone()
    G.eval()
    w = G.mapping(z, None)[:, 0]
    assert torch.equal(G.mapping.w_avg, before)
    G.train()
    G.mapping(z, None, skip_w_avg_update=True)
    assert torch.equal(G.mapping.w_avg, before)
    G.mapping(z, None)
    expected = before + (w.mean(dim=0) - before) * (1 - 0.995)
    # float32: a 5-sample mean and a lerp (~10 roundings) on |w| + |w_avg|.
    magnitude = (w.abs().max(dim=0).values + before.abs()).max().item()
    assert torch.allclose(G.mapping.w_avg, expected, rtol=0, atol=rounding_tol(torch.float32, 10, magnitude))


def test_noise_modes():
    torch.manual_seed(11)
    G = _small_g().eval()
    for name, p in G.named_parameters():
        if name.endswith("noise_strength"):
            p.data.fill_(1.0)
    z = torch.randn(2, 16)
    a, b = G(z, None, noise_mode="const"), G(z, None, noise_mode="const")
    assert torch.equal(a, b)
    r1, r2 = G(z, None, noise_mode="random"), G(z, None, noise_mode="random")
    assert not torch.allclose(r1, r2)
    for buf_name, buf in G.named_buffers():
        if buf_name.endswith("noise_const"):
            buf.zero_()
    assert torch.equal(G(z, None, noise_mode="const"), G(z, None, noise_mode="none"))  # adding 0.0 is exact
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, None, noise_mode="bogus")


@pytest.mark.parametrize("arch", ["skip", "resnet"])
def test_each_block_gets_the_official_ws(arch):
    torch.manual_seed(12)
    G = _small_g(res=16, arch=arch).eval()
    seen = {}
    for name, module in G.synthesis.named_modules():
        if name.endswith("affine"):
            module.register_forward_hook(lambda m, i, o, name=name: seen.update({name: i[0]}))
    ws = torch.randn(2, G.num_ws, 16)
    G.synthesis(ws, noise_mode="const")
    # Each block takes num_conv + num_torgb ws but advances by num_conv: torgb shares w with the next conv0.
    expected = {"b4.conv1": 0, "b8.conv0": 1, "b8.conv1": 2, "b16.conv0": 3, "b16.conv1": 4, "b16.torgb": 5}
    if arch == "skip":
        expected.update({"b4.torgb": 1, "b8.torgb": 3})
    assert set(seen) == {f"{k}.affine" for k in expected}
    for layer, idx in expected.items():
        assert torch.equal(seen[f"{layer}.affine"], ws[:, idx])


def test_fused_and_non_fused_generator_agree():
    torch.manual_seed(13)
    G = _small_g(res=16, c_dim=2).eval()
    ws = G.mapping(torch.randn(3, 16), torch.randn(3, 2))
    a = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    b = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert torch.allclose(a, b, rtol=0, atol=_NETWORK_TOL)


def test_fp16_and_channels_last_blocks_compute_in_fp32_on_cpu_without_bf16(cpu_fp32):
    torch.manual_seed(14)
    G32 = _small_g(res=16)
    G16 = _small_g(res=16, num_fp16_res=4, conv_clamp=256, fp16_channels_last=True)
    G16.load_state_dict(G32.state_dict())
    z = torch.randn(2, 16)
    out = G16(z, None, noise_mode="const")
    assert out.dtype == torch.float32
    assert torch.allclose(out, G32(z, None, noise_mode="const"), rtol=0, atol=_NETWORK_TOL)
    D16 = _small_d(num_fp16_res=4, conv_clamp=256, block_kwargs=dict(fp16_channels_last=True))
    assert D16(out, None).dtype == torch.float32


# ----------------------------------------------------------------------------------------------------------
# bf16 blocks on the CPU (forced on by the `cpu_bf16` fixture, so on any CPU)

# bf16 keeps 8 significant bits (eps 2^-7; fp32 2^-23, negligible beside it). oneDNN accumulates bf16 products in
# fp32, so a layer rounds its output once, not once per term; counted per layer along the longest chain: the
# styles, weight, bias and demodulation casts, the modulation, the convolution, the fused multiply-add with the
# noise, the bias, the leaky ReLU (about 9; 11 with the up-FIR, 6 for to-RGB). The generator's bf16 chain
# (b8 conv0, conv1, b16 conv0, conv1, torgb) is then about 46 roundings, the discriminator's (fromrgb, conv0,
# FIR, conv1 of b16 and b8, about 5 each) about 27; a gradient goes through the chain and back again (twice the
# count). Magnitudes: the largest value of the fp32 result (of the network's gradients, see `_flat_grads`).
_G_BF16_OPS, _D_BF16_OPS = 46, 27


def _bf16_pair(seed: int, c_dim: int = 2, arch: str = "skip"):
    """A small G (noise on) and D whose 8x8 and 16x16 blocks are marked for reduced precision, in train mode."""
    torch.manual_seed(seed)
    G = _small_g(res=16, c_dim=c_dim, arch=arch, num_fp16_res=2, conv_clamp=256).train()
    D = _small_d(res=16, c_dim=c_dim, arch=arch, num_fp16_res=2, conv_clamp=256).train()
    for name, p in G.named_parameters():
        if name.endswith("noise_strength"):
            p.data.fill_(0.5)
    return G, D


def _max_tol(reference: torch.Tensor, ops: int) -> float:
    return rounding_tol(torch.bfloat16, ops, reference.abs().max().item())


def _flat_grads(net: torch.nn.Module) -> torch.Tensor:
    """All parameter gradients of `net` in one vector (0 where none): compared against the largest of them, since
    a gradient that sums many backpropagated terms (a bias, a noise strength) is off in proportion to those terms,
    not to the (possibly much smaller) sum."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in net.parameters()])


def test_block_precision_rule(cpu_bf16):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    rule = networks._block_precision
    for channels_last in (False, True):  # NHWC always: oneDNN's bf16 depthwise (FIR) kernels want it
        assert rule(True, channels_last, False, cpu, True) == (torch.bfloat16, torch.channels_last)
    for args in [(True, True, False, cpu, False), (True, False, True, cpu, True), (False, False, False, cpu, True)]:
        assert rule(*args) == (torch.float32, torch.contiguous_format), args  # eval, force_fp32, unmarked block
    seen = []
    torch.func.vmap(lambda x: seen.append(rule(True, False, False, cpu, True)) or x)(torch.zeros(2, 3))
    assert seen == [(torch.float32, torch.contiguous_format)]  # per-sample gradients (DP-SGD) stay fp32
    # The GPU rule is NVIDIA's, whatever the CPU and the mode.
    assert rule(True, True, False, cuda, False) == (torch.float16, torch.channels_last)
    assert rule(True, False, True, cuda, True) == (torch.float32, torch.contiguous_format)


def test_block_precision_is_fp32_on_a_cpu_without_bf16(cpu_fp32):
    assert networks._block_precision(True, True, False, torch.device("cpu"), True) == (
        torch.float32,
        torch.contiguous_format,
    )


def test_bf16_blocks_compute_in_bf16_only_while_training(cpu_bf16):
    G, D = _bf16_pair(20)
    seen = {}
    for net in (G, D):
        for name in ("b4", "b8", "b16"):
            getattr(net.synthesis if net is G else net, name).register_forward_hook(
                lambda m, args, out, key=(net is G, name): seen.__setitem__(key, out[0].dtype)
            )
    z, c = torch.randn(4, 16), torch.eye(2)[[0, 1, 0, 1]]
    D(G(z, c), c)
    assert seen == {
        (True, "b4"): torch.float32,
        (True, "b8"): torch.bfloat16,
        (True, "b16"): torch.bfloat16,
        (False, "b4"): torch.float32,
        (False, "b8"): torch.bfloat16,
        (False, "b16"): torch.bfloat16,
    }
    G.eval(), D.eval()
    D(G(z, c), c)
    assert set(seen.values()) == {torch.float32}


@pytest.mark.parametrize("arch", ["skip", "resnet"])
def test_bf16_generator_matches_fp32_forward_and_gradients(cpu_bf16, arch):
    G, _ = _bf16_pair(21, arch=arch)
    G.requires_grad_(True)
    z, c = torch.randn(4, 16), torch.eye(2)[[0, 1, 0, 1]]
    weights = torch.randn(4, 3, 16, 16)
    results = {}
    for force_fp32 in (True, False):
        G.zero_grad()
        img = G(z, c, noise_mode="const", force_fp32=force_fp32)
        (img * weights).sum().backward()
        results[force_fp32] = img.detach(), _flat_grads(G)
    (img32, grads32), (img16, grads16) = results[True], results[False]
    assert img16.dtype == torch.float32 and not torch.equal(img16, img32)  # bf16 did run
    torch.testing.assert_close(img16, img32, rtol=0, atol=_max_tol(img32, _G_BF16_OPS))
    assert torch.isfinite(grads16).all()
    torch.testing.assert_close(grads16, grads32, rtol=0, atol=_max_tol(grads32, 2 * _G_BF16_OPS))


def _discriminator_both_ways(seed: int, objective, arch: str = "resnet"):
    """(fp32, bf16) results of `objective(D, x, c, force_fp32) -> (tensors..., scalar to backpropagate)` on one D and
    input, each with the input's gradient and D's flattened parameter gradients appended."""
    _, D = _bf16_pair(seed, arch=arch)
    D.requires_grad_(True)
    img, c = torch.randn(4, 3, 16, 16), torch.eye(2)[[0, 1, 0, 1]]
    results = {}
    for force_fp32 in (True, False):
        D.zero_grad()
        x = img.clone().requires_grad_(True)
        *values, scalar = objective(D, x, c, force_fp32)
        scalar.backward()
        results[force_fp32] = (*[v.detach() for v in values], x.grad, _flat_grads(D))
    return results[True], results[False]


@pytest.mark.parametrize("arch", ["skip", "resnet"])
def test_bf16_discriminator_matches_fp32_logits_and_gradients(cpu_bf16, arch):
    def logits(D, x, c, force_fp32):
        out = D(x, c, force_fp32=force_fp32)
        return out, out.sum()

    (logits32, dx32, grads32), (logits16, dx16, grads16) = _discriminator_both_ways(22, logits, arch)
    assert logits16.dtype == torch.float32 and dx16.dtype == torch.float32 and not torch.equal(logits16, logits32)
    torch.testing.assert_close(logits16, logits32, rtol=0, atol=_max_tol(logits32, _D_BF16_OPS))
    torch.testing.assert_close(dx16, dx32, rtol=0, atol=_max_tol(dx32, 2 * _D_BF16_OPS))  # R1's gradient
    torch.testing.assert_close(grads16, grads32, rtol=0, atol=_max_tol(grads32, 2 * _D_BF16_OPS))


def test_r1_penalty_in_bf16_is_finite_and_close(cpu_bf16):
    # R1 differentiates the input gradient again (create_graph) through the bf16 blocks.
    def r1(D, x, c, force_fp32):
        (dx,) = torch.autograd.grad(D(x, c, force_fp32=force_fp32).sum(), x, create_graph=True)
        penalty = dx.square().sum()
        return penalty, penalty

    (p32, _, g32), (p16, _, g16) = _discriminator_both_ways(23, r1)
    assert torch.isfinite(g16).all()
    # The penalty squares the input gradient: twice its relative error.
    torch.testing.assert_close(p16, p32, rtol=0, atol=2 * _max_tol(p32, 2 * _D_BF16_OPS))
    torch.testing.assert_close(g16, g32, rtol=0, atol=_max_tol(g32, 4 * _D_BF16_OPS))


def test_precision_summary_names_the_blocks_and_the_reason(cpu_bf16):
    G, D = _bf16_pair(24)
    cpu = torch.device("cpu")
    assert networks.precision_summary(dict(G=G, D=D), cpu) == "bf16 blocks: G 8, 16; D 16, 8 (SPINEGAN_CPU_BF16=on)"
    assert networks.precision_summary(dict(G=G, D=D), torch.device("cuda")) == "fp16 blocks: G 8, 16; D 16, 8 (CUDA)"
    unmarked = dict(G=_small_g(res=16), D=_small_d(res=16))
    assert networks.precision_summary(unmarked, cpu).startswith("Mixed precision: off (no blocks marked")


def test_precision_summary_without_bf16(cpu_fp32):
    G, D = _bf16_pair(25)
    assert networks.precision_summary(dict(G=G, D=D), torch.device("cpu")) == (
        "Mixed precision: off (fp32 everywhere: no native reduced precision on cpu)"
    )


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(15)
    G, D = _small_g(c_dim=2), _small_d(c_dim=2)
    c = torch.randn(4, 2)
    D(G(torch.randn(4, 16), c), c).sum().backward()
    for net in (G, D):
        missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert missing == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_blocks_on_cuda_stay_close_to_fp32():
    torch.manual_seed(16)
    G = _small_g(res=32, num_fp16_res=2, conv_clamp=256, fp16_channels_last=True).cuda().eval()
    D = _small_d(res=32, num_fp16_res=2, conv_clamp=256, block_kwargs=dict(fp16_channels_last=True)).cuda()
    z = torch.randn(4, 16, device="cuda")
    img16 = G(z, None, noise_mode="const")
    img32 = G(z, None, noise_mode="const", force_fp32=True)
    assert img16.dtype == torch.float32 and torch.isfinite(img16).all()
    assert (img16 - img32).abs().max().item() < 0.05 * img32.abs().max().item()
    for fused in (True, False):
        assert torch.allclose(
            G.synthesis(G.mapping(z, None), noise_mode="const", fused_modconv=fused),
            img16,
            atol=0.05 * img32.abs().max().item(),
        )
    logits16, logits32 = D(img32, None), D(img32, None, force_fp32=True)
    assert logits16.dtype == torch.float32
    assert (logits16 - logits32).abs().max().item() < 0.05 * (1 + logits32.abs().max().item())


@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
def test_a_pose_warp_starts_as_the_identity_and_adds_only_its_own_weights(arch):
    torch.manual_seed(7)
    plain = _small_g(res=16, c_dim=2, arch=arch)
    posed = _small_g(res=16, c_dim=2, arch=arch, pose_res=8)
    extra = set(posed.state_dict()) - set(plain.state_dict())
    assert extra == {"synthesis.pose.weight", "synthesis.pose.bias"} and set(plain.state_dict()) <= set(
        posed.state_dict()
    )
    posed.load_state_dict(plain.state_dict(), strict=False)
    z, c = torch.randn(3, 16), F.one_hot(torch.tensor([0, 1, 0]), 2).float()
    expected = plain(z, c, noise_mode="const")
    tol = rounding_tol(torch.float32, 64, magnitude=10)  # grid coordinates off the pixel centres by a rounding
    torch.testing.assert_close(posed(z, c, noise_mode="const"), expected, atol=tol, rtol=0)
    # A warp that moves by a whole coarse pixel: the output changes, and gradients reach the warp's weights.
    with torch.no_grad():
        posed.synthesis.pose.bias[0] = 2 / 8
    moved = posed(z, c, noise_mode="const")
    assert (moved - expected).abs().max() > 1e-2
    moved.square().mean().backward()
    assert posed.synthesis.pose.weight.grad.abs().sum() > 0


def test_a_pose_read_from_z_is_the_same_under_every_label_and_the_mean_pose_without_z():
    torch.manual_seed(8)
    G = _small_g(res=16, c_dim=2, pose_res=8, pose_z_dim=16)
    with torch.no_grad():
        G.synthesis.pose.weight.normal_()
    z = torch.randn(4, 16)
    normal, abnormal = (F.one_hot(torch.full([4], k), 2).float() for k in (0, 1))
    code = G.synthesis._pose_code
    torch.testing.assert_close(code(G.mapping(z, normal), z), code(G.mapping(z, abnormal), z), atol=0, rtol=0)
    torch.testing.assert_close(code(G.mapping(z, normal), z), networks.normalize_2nd_moment(z), atol=0, rtol=0)
    # The whole image follows: G(z, c) equals synthesis(ws, pose_z=z); ws alone draw the pose of z = 0.
    ws = G.mapping(z, abnormal)
    torch.testing.assert_close(G(z, abnormal, noise_mode="const"), G.synthesis(ws, pose_z=z, noise_mode="const"))
    mean_pose = G.synthesis(ws, pose_z=torch.zeros_like(z), noise_mode="const")
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), mean_pose)
    assert (mean_pose - G(z, abnormal, noise_mode="const")).abs().max() > 1e-2
    # A pose read from w differs between the labels for the same weights.
    by_w = _small_g(res=16, c_dim=2, pose_res=8)
    with torch.no_grad():
        by_w.synthesis.pose.weight.normal_()
    theta = by_w.synthesis.pose.theta
    assert (theta(by_w.mapping(z, normal)[:, 0]) - theta(by_w.mapping(z, abnormal)[:, 0])).abs().max() > 1e-3


def test_pose_warp_maps_match_the_closed_form_rotation_scale_and_shift():
    warp = networks.PoseWarp(in_dim=4)
    angle, scale, tx, ty = 0.3, 1.2, 0.1, -0.2
    with torch.no_grad():
        warp.bias.copy_(torch.tensor([tx, ty, angle, math.log(scale)], dtype=torch.float32))
    theta = warp.theta(torch.randn(2, 4)).double()  # zero weights: every w gets the bias's pose
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    expected = torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64).expand(2, 2, 3)
    torch.testing.assert_close(theta, expected, atol=rounding_tol(torch.float32, 4, magnitude=2), rtol=0)
    # A shift by exactly one pixel of an 8-wide map (2/8 in [-1, 1] units) moves every column but the last by one.
    with torch.no_grad():
        warp.bias.copy_(torch.tensor([2 / 8, 0, 0, 0], dtype=torch.float32))
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8).expand(2, 1, 8, 8)
    (y,) = warp(torch.zeros(2, 4), x)
    torch.testing.assert_close(y[..., :-1], x[..., 1:], atol=rounding_tol(torch.float32, 16, magnitude=64), rtol=0)


def test_a_pose_resolution_that_is_not_a_coarse_block_is_refused():
    with pytest.raises(ValueError, match="pose_res must be 0 or a power of 2 below 16, got 16"):
        _small_g(res=16, pose_res=16)
