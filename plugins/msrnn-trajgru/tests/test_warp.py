import pytest
import torch
from msrnn_trajgru.warp import sampling_grid, warp


def test_zero_flow_is_identity_with_matching_grid_convention():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    zero = torch.zeros(2, 2, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(warp(image, zero, align_corners=True), image)


def test_zero_flow_in_the_original_convention_stretches_about_the_centre():
    # The original normalises the grid with align_corners=True but samples with False: pixel x is read
    # at x * W / (W - 1) - 1/2, so each border pixel is averaged with the zero padding.
    image = torch.ones(1, 1, 4, 4)
    out = warp(image, torch.zeros(1, 2, 4, 4))
    assert out[0, 0, 0, 0] == pytest.approx(0.25)
    assert out[0, 0, 0, 1] == pytest.approx(0.5)
    assert out[0, 0, 1, 1] == pytest.approx(1.0)
    ramp = torch.arange(5.0).expand(1, 1, 5, 5)
    middle = warp(ramp, torch.zeros(1, 2, 5, 5))[0, 0, 2]
    positions = torch.arange(5.0) * 5 / 4 - 0.5
    assert middle[2] == pytest.approx(2.0)  # the centre is the fixed point
    torch.testing.assert_close(middle[1:4], positions[1:4])


def test_integer_flow_shifts_and_pads_with_zeros():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    flow = torch.zeros(1, 2, 4, 4)
    flow[:, 0] = 1.0  # read one pixel to the right
    out = warp(image, flow, align_corners=True)
    torch.testing.assert_close(out[..., :3], image[..., 1:])
    torch.testing.assert_close(out[..., 3], torch.zeros(1, 1, 4))


def test_several_links_equal_one_warp_each():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 6, 5)
    flows = 2 * torch.randn(2, 4, 2, 6, 5)
    many = warp(image, flows)
    assert many.shape == (2, 4, 3, 6, 5)
    for link in range(4):
        torch.testing.assert_close(many[:, link], warp(image, flows[:, link]))


def test_grid_of_size_one_is_not_divided_by_zero():
    grid = sampling_grid(torch.zeros(1, 2, 1, 1))
    assert torch.isfinite(grid).all()
    assert grid.flatten().tolist() == [-1.0, -1.0]


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\) or \(B, L, 2, H, W\)"):
        warp(torch.rand(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        warp(torch.rand(3, 4, 4), torch.zeros(1, 2, 4, 4))
