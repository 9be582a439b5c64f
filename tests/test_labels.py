"""The fast full-resolution labels equal the plain bilinear upsample + argmax (up to exact ties)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.labels import logits_to_labels, logits_to_labels_plain


def _assert_same_up_to_ties(logits, size, tol=1e-4):
    fast, plain = logits_to_labels(logits, size), logits_to_labels_plain(logits, size)
    assert fast.shape == plain.shape == (logits.shape[0], *size) and fast.dtype == torch.uint8
    diff = (fast != plain).nonzero(as_tuple=True)
    if diff[0].numel():
        up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)
        b, y, x = diff
        a_val = up[b, fast[diff].long(), y, x]
        p_val = up[b, plain[diff].long(), y, x]
        assert torch.allclose(a_val, p_val, atol=tol), "labels differ where the classes are not tied"
    return diff[0].numel()


@pytest.mark.parametrize("low,size", [((7, 9), (50, 61)), ((16, 32), (128, 256)), ((90, 120), (720, 960)),
                                      ((2, 2), (5, 5)), ((12, 5), (97, 40))])
def test_fast_labels_match_plain_on_random_logits(low, size):
    torch.manual_seed(sum(low))
    logits = torch.randn(2, 19, *low) * 3
    assert _assert_same_up_to_ties(logits, size) <= 0.001 * size[0] * size[1]


def test_fast_labels_on_smooth_segmentation_like_logits():
    torch.manual_seed(0)
    coarse = torch.randn(1, 19, 8, 16)
    logits = F.interpolate(coarse, size=(64, 128), mode="bilinear", align_corners=True) * 5
    _assert_same_up_to_ties(logits, (512, 1024))


def test_uniform_cells_copy_the_label_and_degenerate_sizes_fall_back():
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, 2] = 1.0
    assert (logits_to_labels(logits, (31, 29)) == 2).all()
    one_row = torch.randn(1, 5, 1, 6)
    assert torch.equal(logits_to_labels(one_row, (8, 48)), logits_to_labels_plain(one_row, (8, 48)))


def test_hand_computed_boundary_cell():
    # two classes on a 2×2 grid; class 1 wins only at the right column: 0.5 point at x = 0.5 of 3 columns
    logits = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 2.0]]]])  # 1×2×2×2
    # at source x, class0 = 1 − x, class1 = 2x -> class 1 from x > 1/3. Output width 8: x = j/7.
    expected = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1], dtype=torch.uint8)
    out = logits_to_labels(logits, (3, 8))
    assert torch.equal(out[0], expected.expand(3, 8))


def test_a_class_that_wins_no_corner_can_win_between_them():
    # corners alternate between classes 0 and 1, class 2 is second everywhere but wins mid-cell:
    # at the centre class 0 and 1 blend to 0.5 while class 2 stays at 0.9
    corners = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = torch.stack([corners, 1 - corners, torch.full((2, 2), 0.9)]).unsqueeze(0)   # 1×3×2×2
    out = logits_to_labels(logits, (9, 9))
    assert out[0, 4, 4] == 2 and out[0, 0, 0] == 0 and out[0, 0, 8] == 1
    assert torch.equal(out, logits_to_labels_plain(logits, (9, 9)))


def test_channels_last_logits_give_the_same_labels():
    torch.manual_seed(3)
    logits = torch.randn(1, 19, 16, 24)
    nhwc = logits.contiguous(memory_format=torch.channels_last)
    assert torch.equal(logits_to_labels(logits, (128, 192)), logits_to_labels(nhwc, (128, 192)))


def test_noisy_logits_match_plain_up_to_ties():
    torch.manual_seed(5)
    noisy = torch.randn(3, 19, 32, 48)  # nearly every cell is a boundary cell with several candidates
    assert _assert_same_up_to_ties(noisy, (256, 384)) <= 0.001 * 256 * 384 * 3


def test_downsampling_and_single_pixel_outputs_match_plain():
    torch.manual_seed(6)
    logits = torch.randn(2, 7, 20, 30)
    for size in [(9, 13), (1, 1), (1, 40), (20, 30)]:
        _assert_same_up_to_ties(logits, size)


def test_without_numba_the_plain_path_is_used(monkeypatch):
    import models.labels as upsample
    monkeypatch.setattr(upsample.cpu_kernels, "numba", None)
    torch.manual_seed(7)
    logits = torch.randn(1, 5, 6, 7)
    assert torch.equal(upsample.logits_to_labels(logits, (40, 50)), logits_to_labels_plain(logits, (40, 50)))
