"""Local class difference: the mask keeps exactly the strongest pixels, normal images are G's own, and fraction 1
gives G's own rendering under the label."""

import pytest
import torch

from spine.evaluation.local_difference import LocalDifferenceGenerator, local_difference, strongest_part_mask


def test_mask_keeps_the_strongest_fraction_of_pixels():
    difference = torch.zeros([1, 1, 10, 10])
    difference[0, 0, 2, 3] = 5.0  # one strong pixel, one weaker, the rest nothing
    difference[0, 0, 7, 7] = -1.0
    mask = strongest_part_mask(difference, fraction=0.01, radius=0)  # 1 pixel of 100
    # the hard mask holds the strong pixel alone; the 3x3 softening spreads it as 1/n over each pixel's window
    assert mask[0, 0, 2, 3] == pytest.approx(1 / 9) and mask[0, 0, 7, 7] == 0
    assert mask[0, 0, 1:4, 2:5].sum() == pytest.approx(1.0) and mask.sum() == pytest.approx(1.0)


def test_mask_with_radius_counts_regions():
    difference = torch.zeros([1, 1, 12, 12])
    difference[0, 0, 2, 2] = 3.0  # one bright pixel
    difference[0, 0, 8:10, 8:10] = 2.0  # a 2x2 lesion: more strength per 3x3 window
    mask = strongest_part_mask(difference, fraction=1 / 144, radius=1)
    assert mask[0, 0, 8:10, 8:10].sum() > 0 and mask[0, 0, 2, 2] == 0


def test_local_difference_at_full_fraction_is_the_other_rendering():
    g = torch.Generator().manual_seed(0)
    normal, other = torch.randn([3, 1, 8, 8], generator=g), torch.randn([3, 1, 8, 8], generator=g)
    # normal + (other - normal): two float32 roundings of values of at most |normal| + |other|
    tolerance = 2 * torch.finfo(torch.float32).eps * float((normal.abs() + other.abs()).max())
    torch.testing.assert_close(local_difference(normal, other, 1.0), other, rtol=0, atol=tolerance)
    with pytest.raises(ValueError, match="different shapes"):
        local_difference(normal, other[:, :, :4], 0.5)
    with pytest.raises(ValueError, match="positive"):
        strongest_part_mask(other - normal, 0.0)


class TwoClassG(torch.nn.Module):
    """image = z-pattern + 10 * label 1's weight on one pixel + 0.5 everywhere (an image-wide class code)."""

    z_dim, c_dim, img_resolution, img_channels = 4, 2, 8, 1

    def forward(self, z, c, **_kwargs):
        image = z[:, :1, None, None].expand(-1, 1, 8, 8).clone()
        abnormal = c[:, 1].view(-1, 1, 1, 1)
        image = image + 0.5 * abnormal
        image[:, :, 4, 4] += 10 * abnormal[:, :, 0, 0]
        return image


def test_wrapper_keeps_the_lesion_and_drops_the_image_wide_code():
    G = TwoClassG()
    z = torch.randn([4, 4], generator=torch.Generator().manual_seed(1))
    c = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    images = LocalDifferenceGenerator(G, fraction=1 / 64)(z, c)
    as_normal = G(z, torch.tensor([[1.0, 0]] * 4))
    assert torch.equal(images[[0, 2]], as_normal[[0, 2]])  # normal images: G's own
    difference = images[[1, 3]] - as_normal[[1, 3]]
    # the lesion is a region: every pixel whose 3x3 window holds it is as strong (the 1/64 quantile ties 9 pixels),
    # so the softened mask is 1 at the lesion, which is kept whole...
    assert difference[:, 0, 4, 4] == pytest.approx(torch.full([2], 10.5))
    # ...and the 0.5 image-wide code is gone beyond the softened edge of that region
    outside = difference.clone()
    outside[:, :, 2:7, 2:7] = 0
    assert outside.abs().max() == 0


def test_wrapper_refuses_an_unconditional_generator():
    G = TwoClassG()
    G.c_dim = 0
    with pytest.raises(ValueError, match=">= 2 classes"):
        LocalDifferenceGenerator(G, 0.1)


class NoisyTwoClassG(TwoClassG):
    """TwoClassG plus fresh random noise on every pixel when noise_mode is 'random', as G's noise inputs draw."""

    def forward(self, z, c, noise_mode="const", **_kwargs):
        image = super().forward(z, c)
        return image + torch.randn(image.shape) if noise_mode == "random" else image


def test_both_renderings_of_a_latent_share_their_random_noise():
    """The noise alone would differ on every pixel; shared, the difference is the label's effect only: the lesion
    and the image-wide code, as without noise, and the normal rendering carries the same noise draw."""
    G = NoisyTwoClassG()
    z = torch.randn([2, 4], generator=torch.Generator().manual_seed(1))
    c = torch.tensor([[0.0, 1], [0, 1]])
    torch.manual_seed(5)
    images = LocalDifferenceGenerator(G, fraction=1.0)(z, c, noise_mode="random")
    torch.manual_seed(5)
    normal = G(z, torch.tensor([[1.0, 0]] * 2), noise_mode="random")
    expected = normal + (G(z, c) - G(z, torch.tensor([[1.0, 0]] * 2)))
    tolerance = 4 * torch.finfo(torch.float32).eps * float(expected.abs().max() + 1)
    torch.testing.assert_close(images, expected, rtol=0, atol=tolerance)
