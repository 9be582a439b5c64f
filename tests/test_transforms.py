"""Clip-consistent augmentation: reference comparison, label alignment, one draw per clip."""
import pytest
import torch
import torch.nn.functional as F

from dataset.transforms import ClipParams, ClipTransform, ResizeClip, photometric

IGNORE = 255


def reference(frames, label, params, crop):
    """Independent implementation: F.interpolate the whole frame, pad, crop, flip."""
    size = params.scaled_size
    img = F.interpolate(frames.float(), size=size, mode="bilinear", align_corners=False)
    lab = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    pad_h, pad_w = max(0, crop[0] - size[0]), max(0, crop[1] - size[1])
    img = F.pad(img, (0, pad_w, 0, pad_h), value=0.0)
    lab = F.pad(lab, (0, pad_w, 0, pad_h), value=IGNORE)
    rows = slice(params.top, params.top + crop[0])
    cols = slice(params.left, params.left + crop[1])
    img, lab = img[..., rows, cols], lab[rows, cols]
    if params.flip:
        img, lab = img.flip(-1), lab.flip(-1)
    return img.round().clamp(0, 255).to(torch.uint8), lab


def random_clip(t=3, h=20, w=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8)
    label = torch.randint(0, 19, (h, w), generator=g)
    label[0, :5] = IGNORE
    return {"frames": frames, "label": label, "name": "x", "split": "train"}


@pytest.mark.parametrize("params", [
    ClipParams((34, 51), top=5, left=9, flip=False),    # upscale ×1.7, random crop
    ClipParams((34, 51), top=14, left=0, flip=True),
    ClipParams((12, 18), top=0, left=0, flip=True),     # downscale ×0.6: padded to the crop
    ClipParams((20, 30), top=3, left=6, flip=False),    # scale 1: a pure crop
    ClipParams((40, 60), top=20, left=30, flip=True),   # ×2, bottom-right corner
])
def test_matches_interpolate_pad_crop_flip(params):
    sample = random_clip()
    crop = (16, 24)
    out = ClipTransform(crop).apply(sample, params)
    ref_img, ref_lab = reference(sample["frames"], sample["label"], params, crop)
    assert out["frames"].dtype == torch.uint8 and out["frames"].shape == (3, 3, 16, 24)
    diff = (out["frames"].int() - ref_img.int()).abs()
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99  # rounding ties only
    assert out["label"].dtype == torch.int64
    assert torch.equal(out["label"], ref_lab)
    if params.scaled_size == (20, 30):  # scale 1 must be an exact crop of the input
        assert torch.equal(out["frames"], sample["frames"][..., 3:19, 6:30])
    assert out["name"] == "x" and out["split"] == "train"


def blocky_clip(h=24, w=36, block=6, seed=1):
    """Label = class of 6×6 blocks; each image channel = 12·class + 5 (+t in frame t)."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, 19, (h // block, w // block), generator=g)
    label = classes.repeat_interleave(block, 0).repeat_interleave(block, 1)
    image = (12 * label + 5).to(torch.uint8)
    frames = torch.stack([image.expand(3, h, w) + t for t in range(3)])
    return {"frames": frames.contiguous(), "label": label}


def test_label_stays_aligned_with_image():
    sample = blocky_clip()
    transform = ClipTransform((20, 28), scales=(0.5, 0.75, 1.0, 1.5, 2.0), seed=3)
    flips, padded, checked = 0, 0, 0
    for _ in range(25):
        params = transform.sample_params(24, 36)
        flips += params.flip
        out = transform.apply(sample, params)
        label, frames = out["label"], out["frames"].int()
        pad = label == IGNORE
        padded += int(pad.any())
        assert (frames[:, :, pad] == 0).all()  # padding: image 0 where label is ignore
        # pixels whose 3×3 label neighbourhood is uniform are block interiors: exact value
        # (the crop border counts as non-uniform: its outer neighbours are unknown)
        lab = F.pad(label.float()[None, None], (1, 1, 1, 1), value=-1.0)
        uniform = (F.max_pool2d(lab, 3, 1) == -F.max_pool2d(-lab, 3, 1))[0, 0] & ~pad
        checked += int(uniform.sum())
        for t in range(3):
            expected = 12 * label[uniform] + 5 + t
            assert ((frames[t, :, uniform] - expected).abs() <= 1).all()
    assert 0 < flips < 25 and padded > 0  # both flip states and the padding path were tested
    assert checked > 0.2 * 25 * 20 * 28  # a fair share of the pixels was checked exactly


def test_one_draw_per_clip_including_photometric():
    base = random_clip(t=1, h=18, w=26, seed=5)
    sample = dict(base, frames=base["frames"].expand(4, -1, -1, -1).contiguous())
    transform = ClipTransform((12, 20), scale_range=(0.6, 1.8), brightness=0.4, contrast=0.4,
                              saturation=0.4, seed=7)
    drawn = set()
    for _ in range(10):
        out = transform(sample)
        frames = out["frames"]
        for t in range(1, 4):  # identical input frames must stay identical
            assert torch.equal(frames[t], frames[0])
        drawn.add((frames[0].sum().item(), out["label"].sum().item()))
    assert len(drawn) == 10  # ... while different clips get different draws


def test_draws_use_every_scale_and_stay_in_frame():
    transform = ClipTransform((30, 40), seed=0)
    params = [transform.sample_params(50, 70) for _ in range(300)]
    scales = {p.scaled_size for p in params}
    assert scales == {(38, 52), (50, 70), (75, 105), (88, 122), (100, 140)}  # 0.75 … 2.0
    for p in params:  # crop geometry from the actual frame size, inclusive bounds
        assert 0 <= p.top <= max(0, p.scaled_size[0] - 30)
        assert 0 <= p.left <= max(0, p.scaled_size[1] - 40)
    assert 100 < sum(p.flip for p in params) < 200
    assert max(p.top for p in params if p.scaled_size == (100, 140)) > 50
    again = ClipTransform((30, 40), seed=0)
    assert [again.sample_params(50, 70) for _ in range(300)] == params  # reproducible


def test_photometric_hand_computed():
    frames = torch.tensor([[[[100.0, 200.0]], [[50.0, 0.0]], [[0.0, 250.0]]]])  # 1×3×1×2
    bright = photometric(frames, ClipParams((1, 2), 0, 0, brightness=1.5))
    assert torch.equal(bright, torch.tensor([[[[150.0, 255.0]], [[75.0, 0.0]], [[0.0, 255.0]]]]))
    grey = photometric(frames, ClipParams((1, 2), 0, 0, saturation=0.0))
    lum = [0.299 * 100 + 0.587 * 50, 0.299 * 200 + 0.114 * 250]
    torch.testing.assert_close(grey[0, :, 0], torch.tensor([lum, lum, lum]), rtol=0, atol=1e-4)
    flat = photometric(frames, ClipParams((1, 2), 0, 0, contrast=0.0))
    torch.testing.assert_close(flat, torch.full_like(frames, sum(lum) / 2), rtol=0, atol=1e-4)


def test_without_label_and_bad_input():
    sample = random_clip()
    del sample["label"]
    out = ClipTransform((10, 10), seed=0)(sample)
    assert "label" not in out and out["frames"].shape == (3, 3, 10, 10)
    with pytest.raises(ValueError, match="uint8 T×3×H×W"):
        ClipTransform((10, 10))({"frames": torch.zeros(3, 5, 5)})
    with pytest.raises(ValueError, match="crop_size"):
        ClipTransform((0, 10))
    with pytest.raises(ValueError, match="scale_range"):
        ClipTransform((10, 10), scale_range=(2.0, 1.0))


def test_resize_clip():
    sample = random_clip()
    assert ResizeClip(None)(sample)["frames"] is sample["frames"]
    out = ResizeClip((10, 15))(sample)
    ref = F.interpolate(sample["frames"].float(), size=(10, 15), mode="bilinear",
                        align_corners=False).round().to(torch.uint8)
    assert ((out["frames"].int() - ref.int()).abs() <= 1).all()
    assert out["label"] is sample["label"]  # evaluation keeps the full-resolution label
    with_label = ResizeClip((10, 15), resize_label=True)(sample)
    ref_lab = F.interpolate(sample["label"][None, None].float(), size=(10, 15),
                            mode="nearest-exact")[0, 0].long()
    assert torch.equal(with_label["label"], ref_lab)
