"""Tests for noisecraft.images.data: image folders, the digits dataset, loading, flipping and exporting."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from noisecraft.images import data as image_data
from noisecraft.images.data import (
    DataError,
    ImageFolderDataset,
    TensorImageDataset,
    build_image_data,
    digits_dataset,
    export_image_folder,
    image_data_names,
    item_shape,
    load_dataset,
    random_hflip,
    register_image_data,
)


def write_image(path, size=(8, 8), value=0, mode="RGB"):
    """Write a solid image of ``size = (width, height)``; ``value`` is a grey level or colour tuple."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def write_truncated_png(path):
    data = (write_image(path, size=(16, 16), value=(10, 20, 30))).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def make_class_folders(root):
    write_image(root / "dog" / "b.png", value=(0, 0, 0))
    write_image(root / "cat" / "z.png", value=(255, 255, 255))
    write_image(root / "cat" / "a.jpg", value=(255, 0, 0))
    write_image(root / "cat" / ".hidden.png", value=(1, 2, 3))  # hidden files are ignored
    return root


def test_class_folders_give_sorted_labels_and_items(tmp_path):
    dataset = ImageFolderDataset(make_class_folders(tmp_path))
    assert dataset.class_names == ["cat", "dog"] and dataset.num_classes == 2
    assert [path.relative_to(tmp_path).as_posix() for path in dataset.files] == ["cat/a.jpg", "cat/z.png", "dog/b.png"]
    assert [dataset[i]["label"] for i in range(3)] == [0, 0, 1]
    item = dataset[1]
    assert set(item) == {"image", "label", "index"} and item["index"] == 1
    assert item["image"].shape == (3, 8, 8) == dataset.shape and item["image"].dtype == torch.float32
    assert torch.equal(item["image"], torch.ones(3, 8, 8))  # white -> +1
    assert torch.equal(dataset[2]["image"], -torch.ones(3, 8, 8))  # black -> -1
    batch = default_collate([dataset[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 8, 8) and batch["label"].tolist() == [0, 0, 1]


def test_images_in_root_have_no_labels_and_grey_conversion(tmp_path):
    write_image(tmp_path / "a.png", value=(255, 255, 255))
    dataset = ImageFolderDataset(tmp_path, channels=1)
    assert dataset.class_names == [] and "label" not in dataset[0]
    assert dataset[0]["image"].shape == (1, 8, 8)
    write_image(tmp_path / "dogs" / "b.png")
    with pytest.warns(UserWarning, match="both in .* and in its sub-folders; class labels are disabled"):
        assert ImageFolderDataset(tmp_path).labels is None


def test_transparent_pixels_become_white(tmp_path):
    write_image(tmp_path / "a.png", value=(0, 0, 0, 0), mode="RGBA")
    assert torch.equal(ImageFolderDataset(tmp_path)[0]["image"], torch.ones(3, 8, 8))


def test_captions_from_metadata_and_txt_sidecars(tmp_path):
    make_class_folders(tmp_path)
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file_name": "cat/z.png", "text": "a white cat"}) + "\n\n"
        + json.dumps({"file_name": "dog/b.png", "text": "a black dog"}) + "\n"
    )
    (tmp_path / "cat" / "a.txt").write_text("a red cat\n")
    (tmp_path / "dog" / "b.txt").write_text("ignored: metadata.jsonl wins\n")
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.captions == ["a red cat", "a white cat", "a black dog"]
    assert dataset[0]["caption"] == "a red cat"


def test_partial_captions_warn_and_default_to_empty(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    (tmp_path / "b.txt").write_text("only b")
    with pytest.warns(UserWarning, match="1 of 2 images have no caption"):
        dataset = ImageFolderDataset(tmp_path)
    assert dataset.captions == ["", "only b"]


def test_resolution_resizes_and_centre_crops(tmp_path):
    image = np.zeros((4, 12), dtype=np.uint8)
    image[:, 4:8] = 255  # white centre, black sides
    Image.fromarray(image).save(tmp_path / "wide.png")
    write_image(tmp_path / "small.png", size=(2, 2), value=(255, 255, 255))
    dataset = ImageFolderDataset(tmp_path, resolution=4, channels=1)
    assert dataset.shape == (1, 4, 4)
    assert torch.allclose(dataset[1]["image"], torch.ones(1, 4, 4), atol=0.02)  # the crop kept only the centre
    stretched = ImageFolderDataset(tmp_path, resolution=4, channels=1, center_crop=False)
    assert stretched[1]["image"].min() < -0.9  # stretching keeps the black sides


def test_lazy_loading_matches_in_memory(tmp_path):
    make_class_folders(tmp_path)
    cached = ImageFolderDataset(tmp_path, resolution=4)
    lazy = ImageFolderDataset(tmp_path, resolution=4, in_memory=False)
    for index in range(len(cached)):
        assert torch.equal(cached[index]["image"], lazy[index]["image"])


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match=f"^no such directory: {re.escape(str(tmp_path / 'nope'))}$"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"no images found in .* \(looked for .png, .jpg, .jpeg, .webp, .bmp\)"):
        ImageFolderDataset(tmp_path)


@pytest.mark.parametrize("corrupt", ["truncated", "random bytes"])
def test_corrupt_image_is_reported_with_skip_bad_hint(tmp_path, corrupt):
    write_image(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    if corrupt == "truncated":
        write_truncated_png(bad)
    else:
        bad.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError, match=f"^cannot read image {re.escape(str(bad))}: .+; pass --skip-bad to skip"):
        ImageFolderDataset(tmp_path)


def test_skip_bad_skips_counts_and_warns(tmp_path):
    write_image(tmp_path / "good.png")
    write_truncated_png(tmp_path / "half.png")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        dataset = ImageFolderDataset(tmp_path, skip_bad=True)
    assert len(dataset) == 1 and [path.name for path, _ in dataset.skipped] == ["half.png", "noise.jpg"]
    (tmp_path / "good.png").unlink()
    with pytest.raises(DataError, match="no readable images"), pytest.warns(UserWarning):
        ImageFolderDataset(tmp_path, skip_bad=True)


def test_skip_bad_warns_once_naming_the_files_and_why(tmp_path):
    write_image(tmp_path / "good.png")
    write_truncated_png(tmp_path / "half.png")
    for i in range(6):
        (tmp_path / f"noise{i}.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning) as warned:
        dataset = ImageFolderDataset(tmp_path, skip_bad=True)
    assert len(warned) == 1 and len(dataset.skipped) == 7
    message = str(warned[0].message)
    assert message.startswith(f"skipped 7 unreadable image file(s) in {tmp_path}: half.png (")
    assert "truncated" in message and "cannot identify image file" in message  # why each one was skipped
    assert "noise3.jpg" in message and "noise4.jpg" not in message and message.endswith("and 2 more")


def test_mixed_sizes_need_resolution(tmp_path):
    write_image(tmp_path / "a.png", size=(32, 32))
    write_image(tmp_path / "b.png", size=(28, 28))
    expected = "images have different sizes (32x32 in a.png, 28x28 in b.png); pass --resolution N to resize"
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        ImageFolderDataset(tmp_path)
    assert ImageFolderDataset(tmp_path, resolution=16).shape == (3, 16, 16)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "metadata.jsonl line 2: invalid JSON"),
        ('{"text": "no file"}', 'metadata.jsonl line 2: missing "file_name" key'),
        ('{"file_name": "ghost.png", "text": "x"}', "metadata.jsonl line 2: file_name 'ghost.png' not found"),
    ],
)
def test_malformed_metadata(tmp_path, line, message):
    write_image(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "fine"}) + "\n" + line + "\n")
    with pytest.raises(DataError, match=f"^{re.escape(message)}"):
        ImageFolderDataset(tmp_path)


def test_digits_shapes_range_labels():
    dataset = digits_dataset(resolution=16)
    assert len(dataset) == 1797 and dataset.shape == (1, 16, 16)
    assert dataset.class_names == [str(digit) for digit in range(10)]
    images = dataset.images
    assert images.min() == -1.0 and images.max() <= 1.0 and images.max() > 0.9
    assert sorted(set(dataset.labels)) == list(range(10))
    assert set(dataset[5]) == {"image", "label", "index"}


def test_digits_split_is_stratified_deterministic_and_complete():
    full, train, test = (digits_dataset(resolution=None, split=split) for split in ("all", "train", "test"))
    assert len(train) + len(test) == len(full) and abs(len(test) - 0.2 * len(full)) < 10
    for digit in range(10):
        assert test.labels.count(digit) == round(0.2 * full.labels.count(digit))

    def sorted_rows(*datasets):
        rows = torch.cat([dataset.images for dataset in datasets]).flatten(1).numpy()
        return rows[np.lexsort(rows.T[::-1])]

    assert np.array_equal(sorted_rows(train, test), sorted_rows(full))  # train and test partition the data
    assert torch.equal(digits_dataset(resolution=None, split="test", seed=0).images, test.images)
    assert not torch.equal(digits_dataset(resolution=None, split="test", seed=1).images, test.images)
    with pytest.raises(DataError, match="split must be"):
        digits_dataset(split="validation")


def test_load_dataset_dispatch_and_errors(tmp_path):
    write_image(tmp_path / "a.png")
    assert isinstance(load_dataset(tmp_path, resolution=4), ImageFolderDataset)
    assert load_dataset("digits", resolution=8, split="test").shape == (1, 8, 8)
    assert len(load_dataset("digits:train")) + len(load_dataset("digits:test")) == len(load_dataset("digits"))
    assert torch.equal(load_dataset("digits:test").images, digits_dataset(split="test").images)
    with pytest.raises(DataError, match="unknown dataset 'cifar': expected 'digits', 'digits:train'"):
        load_dataset("cifar")
    with pytest.raises(TypeError, match="random_flip do not apply to dataset 'digits'"):
        load_dataset("digits", random_flip=True)


def test_random_hflip_follows_the_generator():
    images = torch.arange(4.0).expand(64, 1, 2, 4)
    first = random_hflip(images, generator=torch.Generator().manual_seed(0))
    again = random_hflip(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    flipped = (first[:, 0, 0, 0] == 3.0).sum()
    assert 0 < flipped < 64 and torch.equal(first[first[:, 0, 0, 0] == 3.0], images.flip(-1)[: int(flipped)])
    assert torch.equal(random_hflip(images, generator=None, probability=0.0), images)


def test_export_image_folder_round_trip(tmp_path):
    source = make_class_folders(tmp_path / "source")
    (source / "cat" / "z.txt").write_text("a white cat")
    with pytest.warns(UserWarning, match="no caption"):
        dataset = ImageFolderDataset(source)
    out = export_image_folder(dataset, tmp_path / "export")
    reloaded = ImageFolderDataset(out)  # every exported image has a metadata.jsonl line, so no warning
    assert reloaded.class_names == dataset.class_names and reloaded.labels == dataset.labels
    assert reloaded.captions == dataset.captions
    for index in range(len(dataset)):
        assert torch.equal(reloaded[index]["image"], dataset[index]["image"])
    with pytest.raises(FileExistsError, match="not empty"):
        export_image_folder(dataset, out)


# ----------------------------------------------------------------------------------------------------------------
# Training data by name (ImageTrainConfig.data)


def train_config(data, **fields):
    from noisecraft.images.training import ImageTrainConfig  # the real config, so field names stay honest

    return ImageTrainConfig(data=str(data), num_examples=4, **fields)


def test_registered_names_and_folders_build_their_data(tmp_path):
    assert image_data_names() == ["digits", "shapes"]
    digits = build_image_data(train_config("digits:test", resolution=8))
    assert len(digits) == len(digits_dataset(split="test")) and item_shape(digits) == (1, 8, 8)
    shapes = build_image_data(train_config("shapes", resolution=16))
    assert len(shapes) == 4 and item_shape(shapes) == (3, 16, 16)
    write_image(tmp_path / "a.png", size=(8, 12))  # not square: the data layer keeps height 12, width 8
    folder = build_image_data(train_config(tmp_path))
    assert item_shape(folder) == folder.shape == (3, 12, 8) and folder[0]["image"].shape == (3, 12, 8)


def test_unknown_data_says_what_is_accepted(tmp_path):
    expected = ("unknown data 'digts': use one of digits, shapes, or an image folder path; "
                "no folder named 'digts' exists")
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        build_image_data(train_config("digts"))
    with pytest.raises(DataError, match="^unknown data 'digits:val': use digits, digits:train, digits:test"):
        build_image_data(train_config("digits:val"))
    with pytest.raises(DataError, match="^unknown data 'shapes:big': use shapes$"):
        build_image_data(train_config("shapes:big"))
    with pytest.raises(DataError, match="^no such directory: "):  # a path, so not taken for a misspelt name
        build_image_data(train_config(tmp_path / "missing"))


def test_data_settings_that_do_not_fit_are_refused():
    from noisecraft.images.training import build_dataset

    with pytest.raises(ValueError, match=r"^the digits dataset is grey: use --channels 1 \(Python: channels=1\)"):
        build_dataset(train_config("digits", channels=3))
    with pytest.raises(ValueError, match=r"^the shapes world is RGB: use --channels 3 \(Python: channels=3\)"):
        build_dataset(train_config("shapes", channels=1))
    with pytest.raises(ValueError, match="^'world' settings only apply to data='shapes', not 'digits:train'$"):
        build_dataset(train_config("digits:train", world={"resolution": 16}))


@pytest.mark.parametrize("resolution", [0, -8, 16.0, True, "16"])
def test_resolution_must_be_a_positive_integer(tmp_path, resolution):
    """0 used to fall back to the default size for digits and shapes; now every source refuses it."""
    write_image(tmp_path / "a.png")
    for data in ("digits", "shapes", tmp_path):
        with pytest.raises(DataError, match=r"^resolution must be a positive integer \(pixels per side\) or unset, "
                                            rf"got {re.escape(repr(resolution))}$"):
            build_image_data(train_config(data, resolution=resolution))


def test_a_new_data_source_is_one_registration(monkeypatch):
    monkeypatch.setattr(image_data, "_IMAGE_DATA", dict(image_data._IMAGE_DATA))  # leave the real table alone
    register_image_data("zeros", lambda config: TensorImageDataset(torch.zeros(2, 1, 4, 6)))
    assert image_data_names() == ["digits", "shapes", "zeros"]
    assert item_shape(build_image_data(train_config("zeros"))) == (1, 4, 6)
    with pytest.raises(ValueError, match="image data 'digits' is already registered"):
        register_image_data("digits", lambda config: None)
    with pytest.raises(ValueError, match="hold no ':' or path separator"):
        register_image_data("digits:all", lambda config: None)
