"""Reading a folder for scan (scan/folder.py): every PIL format as RGB uint8, class subfolders,
and everything that cannot be scanned skipped with its reason."""
import os

import numpy as np
import pytest
from PIL import Image

from poisonedencoder.core.errors import UserError
from poisonedencoder.scan.folder import read_folder


def _rgb(h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_every_format_and_mode_becomes_rgb_uint8_and_class_folders_are_read(tmp_path):
    y, x = np.mgrid[0:12, 0:20]
    img = np.stack([x * 12, y * 20, x * 6 + y * 10], -1).astype(np.uint8)  # smooth: JPEG keeps it close
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    Image.fromarray(img).save(tmp_path / "cat" / "a.png")
    Image.fromarray(img).save(tmp_path / "cat" / "b.JPG", quality=95)
    Image.fromarray(img).convert("RGBA").save(tmp_path / "dog" / "c.webp", lossless=True)
    Image.fromarray(img).convert("L").save(tmp_path / "dog" / "d.bmp")
    Image.fromarray(img).convert("P").save(tmp_path / "e.gif")
    Image.fromarray((img[..., 0].astype(np.uint16) * 257)).save(tmp_path / "f.tif")  # 16-bit gray
    (tmp_path / "notes.txt").write_text("not an image")
    d = read_folder(tmp_path, log=lambda _: None)
    assert d.paths == ["cat/a.png", "cat/b.JPG", "dog/c.webp", "dog/d.bmp", "e.gif", "f.tif"]  # sorted, labels ignored
    assert all(im.dtype == np.uint8 and im.shape == (12, 20, 3) for im in d.images)
    assert (d.images[0] == img).all() and (d.images[2] == img).all()  # lossless formats exactly
    assert np.abs(d.images[1].astype(int) - img).mean() < 8  # JPEG, close
    assert d.others == 1 and d.skipped == []


def test_what_cannot_be_scanned_is_skipped_with_its_reason(tmp_path, bomb_png):
    root, outside = tmp_path / "f", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    for i in range(3):
        Image.fromarray(_rgb(seed=i)).save(root / f"ok{i}.png")
    Image.fromarray(_rgb(seed=9)).save(outside / "o.png")
    full = (root / "ok0.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "text.png").write_text("hello")
    Image.fromarray(_rgb(1, 1)).save(root / "tiny.png")
    Image.fromarray(_rgb(7, 40)).save(root / "thin.png")
    bomb_png(root / "bomb.png")
    os.symlink(outside / "o.png", root / "link_out.png")
    os.symlink(outside, root / "dir_out")
    os.symlink(root / "ok1.png", root / "link_in.png")  # inside: read
    os.symlink(tmp_path / "gone.png", root / "broken.png")
    os.mkfifo(root / "fifo.png")  # opening it would block: never opened
    d = read_folder(root, log=lambda _: None)
    assert d.paths == ["link_in.png", "ok0.png", "ok1.png", "ok2.png"]
    why = dict(d.skipped)
    assert set(why) == {"truncated.png", "text.png", "tiny.png", "thin.png", "bomb.png", "link_out.png", "dir_out/",
                        "broken.png", "fifo.png"}
    assert why["truncated.png"].startswith("truncated or damaged") and why["text.png"] == "not an image PIL can read"
    assert why["tiny.png"].startswith("too small: 1x1") and why["thin.png"].startswith("too small: 40x7")
    assert "decompression-bomb" in why["bomb.png"] and "outside FOLDER" in why["link_out.png"]
    assert "outside FOLDER" in why["dir_out/"] and why["broken.png"] == "broken symlink"
    assert why["fifo.png"] == "not a regular file"


def test_the_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(_rgb(16, 16)).save(tmp_path / "a.png")
    Image.fromarray(_rgb(16, 32)).save(tmp_path / "b.png")
    monkeypatch.setenv("POISONEDENCODER_MAX_PIXELS", "300")
    d = read_folder(tmp_path, log=lambda _: None)
    assert d.paths == ["a.png"] and "more than 300 pixels" in dict(d.skipped)["b.png"]


def test_a_missing_an_empty_or_an_unreadable_folder_is_an_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        read_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("no")
    with pytest.raises(UserError, match="1 image file.*none readable"):
        read_folder(tmp_path / "bad", log=lambda _: None)
    (tmp_path / "file.png").write_text("no")
    with pytest.raises(UserError, match="not a folder"):
        read_folder(tmp_path / "file.png")


def test_a_folder_left_out_is_not_read(tmp_path):
    (tmp_path / "out").mkdir()
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    Image.fromarray(_rgb()).save(tmp_path / "out" / "suspects.png")
    assert read_folder(tmp_path, exclude=(tmp_path / "out",), log=lambda _: None).paths == ["a.png"]
