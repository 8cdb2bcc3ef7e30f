"""Preprocessing, IDX files and dataset readers against numbers worked out by hand on tiny pictures.

Geometry tests use nearest-neighbour resampling and scale 1, so every output value is a source pixel
whose position can be read off: Pillow's nearest picks source index floor((i + 0.5) * source / target).
"""
import gzip
import math
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from skdeploy.data import (
    FASHION_MNIST_CLASSES,
    InputShape,
    Preprocessing,
    UnreadableSample,
    class_names_for,
    load_fashion_mnist,
    open_source,
    read_idx,
)
from skdeploy.errors import SkdeployError, UsageError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# one RGB pixel and per-channel settings that differ, so a swapped order or x/std - mean shows
PIXEL = (255, 51, 102)  # / 255 = (1.0, 0.2, 0.4)
MEAN = (0.5, 0.1, 0.2)
STD = (0.25, 0.5, 2.0)


def picture(values, mode=None):
    """A PIL image from nested lists: (H, W) gray, (H, W, 3) RGB, (H, W, 4) RGBA; uint16 gives I;16."""
    array = np.array(values, dtype=np.uint16 if mode == "I;16" else np.uint8)
    return Image.fromarray(array)


def raw(resize, crop, channel_order="GRAY", interpolation="nearest", **fields):
    """Preprocessing that keeps pixel values (scale 1, mean 0, std 1) unless told otherwise."""
    channels = 1 if channel_order == "GRAY" else 3
    fields = {"scale": 1.0, "mean": (0.0,) * channels, "std": (1.0,) * channels, **fields}
    return Preprocessing(resize=resize, crop=crop, channel_order=channel_order, interpolation=interpolation,
                         **fields)


def nearest_sources(source, target):
    return [math.floor((i + 0.5) * source / target) for i in range(target)]


def grid(height, width):
    """Pixel value 10 * row + column: every value says where it came from."""
    return [[10 * row + column for column in range(width)] for row in range(height)]


# ---- resize of the shorter side, centre crop --------------------------------------------------------
def test_portrait_shorter_side_resized_then_centre_rows_cropped():
    # 2 wide x 4 high, resize 4: the width doubles to 4, the height to 8; the crop takes rows 2..5 of 8
    out = raw(4, (4, 4))(picture([[1, 2], [3, 4], [5, 6], [7, 8]]))
    np.testing.assert_array_equal(out, [[[3, 3, 4, 4], [3, 3, 4, 4], [5, 5, 6, 6], [5, 5, 6, 6]]])


def test_landscape_shorter_side_resized_then_centre_columns_cropped():
    # 4 wide x 2 high, resize 4: 8 wide x 4 high; the crop takes columns 2..5 of 8
    out = raw(4, (4, 4))(picture([[1, 2, 3, 4], [5, 6, 7, 8]]))
    np.testing.assert_array_equal(out, [[[2, 2, 3, 3], [2, 2, 3, 3], [6, 6, 7, 7], [6, 6, 7, 7]]])


def test_resized_size_is_rounded_not_truncated():
    # 5 x 2, resize 3: ratio 1.5, width 7.5 -> 8 (7 if truncated), height 3; left = (8 - 3) // 2 = 2
    assert nearest_sources(5, 8)[2:5] == [1, 2, 2] and nearest_sources(2, 3) == [0, 1, 1]
    out = raw(3, (3, 3))(picture(grid(2, 5)))
    np.testing.assert_array_equal(out, [[[1, 2, 2], [11, 12, 12], [11, 12, 12]]])


def test_resize_below_the_crop_is_raised_to_the_crop():
    # 4 x 4, resize 2 would give 2 x 2 < crop 3 x 3: resized to 3 x 3 instead (sources 0, 2, 3), no padding
    assert nearest_sources(4, 3) == [0, 2, 3]
    out = raw(2, (3, 3))(picture(grid(4, 4)))
    np.testing.assert_array_equal(out, [[[0, 2, 3], [20, 22, 23], [30, 32, 33]]])


def test_non_square_crop_raises_width_and_height_separately():
    # 2 x 2, resize 2, crop 1 high x 3 wide: the width becomes 3 (sources 0, 1, 1), the height stays 2
    out = raw(2, (1, 3))(picture([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(out, [[[1, 2, 2]]])


@pytest.mark.parametrize("height, width, crop, top, left", [
    (4, 5, (2, 3), 1, 1),  # odd width margin 2, even height margin 2
    (5, 5, (2, 2), 1, 1),  # odd margin 3: one more row/column after the crop than before
    (6, 6, (2, 2), 2, 2),  # even margin 4
    (5, 6, (5, 6), 0, 0),  # no margin
    (5, 7, (4, 2), 0, 2),  # margins 1 and 5
])
def test_centre_crop_offsets(height, width, crop, top, left):
    out = raw(min(height, width), crop)(picture(grid(height, width)))
    expected = np.array(grid(height, width))[top:top + crop[0], left:left + crop[1]]
    np.testing.assert_array_equal(out, expected[None])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.data())
def test_centre_crop_takes_the_middle_whatever_the_sizes(height, width, data):
    crop_height, crop_width = data.draw(st.integers(1, height)), data.draw(st.integers(1, width))
    image = np.arange(height * width, dtype=np.uint8).reshape(height, width)
    out = raw(min(height, width), (crop_height, crop_width))(Image.fromarray(image))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    np.testing.assert_array_equal(out[0], image[top:top + crop_height, left:left + crop_width])


@pytest.mark.parametrize("interpolation, row", [
    ("nearest", [0, 0, 200, 200]),
    # triangle filter on centres 0.25, 0.75, 1.25, 1.75 against pixels at 0.5 and 1.5 (outside dropped)
    ("bilinear", [0, 50, 150, 200]),
    # Keys cubic, a = -0.5: w(0.25) = 0.8671875, w(0.75) = 0.2265625, w(1.25) = -0.0703125, normalised:
    # 200 * 0.2266 / 1.0938 = 41.4, 200 * 0.8672 / 1.0938 = 158.6, 200 * 0.8672 / 0.7969 = 217.6 (overshoot)
    ("bicubic", [0, 41, 159, 218]),
])
def test_interpolation_of_a_doubled_edge(interpolation, row):
    out = raw(2, (2, 4), interpolation=interpolation)(picture([[0, 200]]))
    np.testing.assert_array_equal(out, [[row, row]])


def test_interpolation_defaults_to_bilinear():
    out = Preprocessing(resize=2, crop=(2, 4), mean=(0.0,), std=(1.0,), channel_order="GRAY", scale=1.0)(
        picture([[0, 200]]))
    np.testing.assert_array_equal(out, [[[0, 50, 150, 200]] * 2])


# ---- scale, mean/std, channel order ----------------------------------------------------------------
def test_default_scale_is_one_over_255():
    out = Preprocessing(resize=1, crop=(1, 3), mean=(0.0,), std=(1.0,), channel_order="GRAY")(
        picture([[255, 51, 0]]))
    np.testing.assert_allclose(out, [[[1.0, 0.2, 0.0]]], rtol=1e-6)


def test_custom_scale():
    np.testing.assert_array_equal(raw(1, (1, 2), scale=0.5)(picture([[4, 9]])), [[[2.0, 4.5]]])


def test_mean_then_std_per_channel_in_rgb_order():
    out = raw(1, (1, 1), "RGB", mean=MEAN, std=STD, scale=1 / 255)(picture([[PIXEL]]))
    # ((1.0 - 0.5) / 0.25, (0.2 - 0.1) / 0.5, (0.4 - 0.2) / 2.0); x / std - mean would give 3.5, 0.3, 0.0
    assert out.dtype == np.float32 and out.shape == (3, 1, 1)
    np.testing.assert_allclose(out[:, 0, 0], [2.0, 0.2, 0.1], rtol=1e-5)


def test_bgr_reverses_channels_and_takes_mean_std_in_model_order():
    out = raw(1, (1, 1), "BGR", mean=MEAN, std=STD, scale=1 / 255)(picture([[PIXEL]]))
    # channels become (B, G, R) = (0.4, 0.2, 1.0): ((0.4 - 0.5) / 0.25, (0.2 - 0.1) / 0.5, (1.0 - 0.2) / 2.0)
    np.testing.assert_allclose(out[:, 0, 0], [-0.4, 0.2, 0.4], rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, (2, 3, 3)),
       st.tuples(*[st.floats(-2, 2)] * 3), st.tuples(*[st.floats(0.05, 4)] * 3), st.sampled_from(["RGB", "BGR"]))
def test_normalisation_is_scaled_pixel_minus_mean_over_std(pixels, mean, std, order):
    out = raw(2, (2, 3), order, mean=mean, std=std, scale=1 / 255)(Image.fromarray(pixels))
    channels_first = pixels.transpose(2, 0, 1).astype(np.float64)
    if order == "BGR":
        channels_first = channels_first[::-1]
    expected = (channels_first / 255 - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))
    assert out.shape == (3, 2, 3) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# ---- picture modes the model did not ask for --------------------------------------------------------
def test_rgb_picture_to_a_gray_model_uses_itu_601_luma():
    # L = 0.299 R + 0.587 G + 0.114 B, rounded: 76.2, 149.7, 29.1, and 2.99 + 11.74 + 3.42 = 18.2
    out = raw(1, (1, 4))(picture([[RED, GREEN, BLUE, (10, 20, 30)]]))
    np.testing.assert_array_equal(out, [[[76, 150, 29, 18]]])


def test_gray_picture_to_an_rgb_model_repeats_the_value_per_channel():
    out = raw(1, (1, 1), "RGB", mean=MEAN, std=STD, scale=1 / 255)(picture([[102]]))
    # 0.4 in every channel: ((0.4 - 0.5) / 0.25, (0.4 - 0.1) / 0.5, (0.4 - 0.2) / 2.0)
    np.testing.assert_allclose(out[:, 0, 0], [-0.4, 0.6, 0.1], rtol=1e-5)


def test_rgba_drops_alpha_without_compositing():
    rgba = picture([[(10, 20, 30, 0), (200, 100, 50, 128)]])
    np.testing.assert_array_equal(raw(1, (1, 2), "RGB")(rgba), [[[10, 200]], [[20, 100]], [[30, 50]]])
    # gray: 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2; the transparent pixel keeps its colour (18.2)
    np.testing.assert_array_equal(raw(1, (1, 2))(rgba), [[[18, 124]]])


SIXTEEN_BIT = [[0, 100, 255, 256, 1000, 32768, 65535]]


@pytest.mark.parametrize("order", ["GRAY", "RGB", "BGR"])
def test_sixteen_bit_pictures_are_scaled_onto_the_eight_bit_range_in_every_channel(order):
    out = raw(1, (1, 7), order)(picture(SIXTEEN_BIT, "I;16"))
    assert out.shape == (1 if order == "GRAY" else 3, 1, 7)
    for channel in out:  # 32768 -> 127.502, not 255
        np.testing.assert_allclose(channel, np.array(SIXTEEN_BIT) * 255 / 65535, rtol=1e-6)


@pytest.mark.parametrize("values, mode", [(np.array([[1, 2]], np.int32), "I"), (np.array([[0.5, 1]], np.float32), "F")])
def test_pictures_without_a_known_full_scale_are_refused(values, mode):
    with pytest.raises(UsageError, match=f"mode {mode}.*convert it to 8 or 16 bits"):
        raw(1, (1, 2))(Image.fromarray(values))


def test_sixteen_bit_pictures_should_use_their_full_range():
    out = Preprocessing(resize=1, crop=(1, 3), mean=(0.0,), std=(1.0,), channel_order="GRAY")(
        picture([[0, 32768, 65535]], "I;16"))
    np.testing.assert_allclose(out, [[[0.0, 0.5, 1.0]]], atol=1 / 255)  # mid-gray stays mid-gray


# ---- batches and arrays -------------------------------------------------------------------------------
def test_arrays_of_uint8_pictures_to_nchw():
    pixels = np.array([[[0, 51], [102, 255]], [[255, 255], [0, 0]]], np.uint8)
    out = Preprocessing(resize=2, crop=(2, 2), mean=(0.5,), std=(0.5,), channel_order="GRAY").arrays(pixels)
    # (x / 255 - 0.5) / 0.5 = 2x / 255 - 1
    np.testing.assert_allclose(out, [[[[-1.0, -0.6], [-0.2, 1.0]]], [[[1.0, 1.0], [-1.0, -1.0]]]], rtol=1e-5)


@pytest.mark.parametrize("order, channels", [("GRAY", 1), ("RGB", 3), ("BGR", 3)])
def test_no_pictures_give_an_empty_batch_of_the_model_shape(order, channels):
    preprocessing = raw(3, (2, 3), order)
    assert preprocessing.channels == channels
    out = preprocessing.arrays(np.zeros((0, 5, 5), np.uint8))
    assert out.shape == (0, channels, 2, 3) and out.dtype == np.float32


def test_batch_stacks_pictures_in_order():
    out = raw(1, (1, 2), "RGB").batch([picture([[RED, BLUE]]), picture([[GREEN, GREEN]])])
    np.testing.assert_array_equal(out, [[[[255, 0]], [[0, 0]], [[0, 255]]], [[[0, 0]], [[255, 255]], [[0, 0]]]])


# ---- the manifest's dict ------------------------------------------------------------------------------
def test_to_dict_has_every_field_with_defaults_and_lists():
    assert Preprocessing(resize=36, crop=(32, 30), mean=(0.5,), std=(0.25,)).to_dict() == {
        "resize": 36, "crop": [32, 30], "mean": [0.5], "std": [0.25], "channel_order": "RGB",
        "interpolation": "bilinear", "scale": 1 / 255, "layout": "NCHW", "in_graph": False, "raw_dtype": "uint8"}


def test_from_dict_fills_defaults_and_converts_types():
    loaded = Preprocessing.from_dict({"resize": "36", "crop": ["32", 30.0], "mean": [0, "0.5", 1],
                                      "std": [1, 2, "4"]})
    assert loaded == Preprocessing(resize=36, crop=(32, 30), mean=(0.0, 0.5, 1.0), std=(1.0, 2.0, 4.0),
                                   channel_order="RGB", interpolation="bilinear", scale=1 / 255, layout="NCHW")


def test_to_dict_from_dict_round_trip():
    original = Preprocessing(resize=3, crop=(2, 2), mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0), channel_order="BGR",
                             interpolation="bicubic", scale=0.5, layout="NHWC", in_graph=True, raw_dtype="float32")
    assert Preprocessing.from_dict(original.to_dict()) == original


@pytest.mark.parametrize("broken", [{"crop": [2, 2], "mean": [0], "std": [1]},  # resize missing
                                    {"resize": 2, "crop": [2, "x"], "mean": [0], "std": [1]},
                                    {"resize": 2, "crop": 2, "mean": [0], "std": [1]}])
def test_from_dict_malformed_is_a_usage_error(broken):
    with pytest.raises(UsageError, match="preprocessing settings are incomplete or malformed"):
        Preprocessing.from_dict(broken)


def test_dataset_class_names():
    assert class_names_for("fashion-mnist") == FASHION_MNIST_CLASSES
    assert len(FASHION_MNIST_CLASSES) == 10
    assert (FASHION_MNIST_CLASSES[0], FASHION_MNIST_CLASSES[5], FASHION_MNIST_CLASSES[9]) == \
        ("T-shirt/top", "Sandal", "Ankle boot")
    assert class_names_for("imagenet") is None


# ---- IDX files ------------------------------------------------------------------------------------------
def idx(type_code, dims, body):
    """An IDX file's bytes: two zero bytes, the type, the dimension count, big-endian uint32 sizes, data."""
    return bytes([0, 0, type_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + bytes(body)


@pytest.mark.parametrize("type_code, dims, body, dtype, expected", [
    (0x08, (2, 3), [0, 1, 2, 3, 4, 255], np.uint8, [[0, 1, 2], [3, 4, 255]]),
    (0x09, (3,), [0x7F, 0x80, 0xFF], np.int8, [127, -128, -1]),
    (0x0B, (2,), [0x01, 0x02, 0xFF, 0xFE], np.int16, [258, -2]),
    (0x0C, (2,), [0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF], np.int32, [256, -1]),
    (0x0D, (2,), [0x3F, 0x80, 0, 0, 0xC0, 0, 0, 0], np.float32, [1.0, -2.0]),
    (0x0E, (1,), [0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18], np.float64, [math.pi]),
    (0x08, (2, 1, 2), [9, 8, 7, 6], np.uint8, [[[9, 8]], [[7, 6]]]),
])
@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_every_type(tmp_path, type_code, dims, body, dtype, expected, gzipped):
    content = idx(type_code, dims, body)
    path = tmp_path / ("x.idx.gz" if gzipped else "x.idx")
    path.write_bytes(gzip.compress(content) if gzipped else content)
    array = read_idx(path)
    assert array.dtype.kind == np.dtype(dtype).kind and array.dtype.itemsize == np.dtype(dtype).itemsize
    assert array.shape == dims
    np.testing.assert_array_equal(array, expected)


def test_read_idx_sizes_are_big_endian(tmp_path):
    (tmp_path / "x.idx").write_bytes(idx(0x08, (1, 256), range(256)))  # 256 = bytes 00 00 01 00
    np.testing.assert_array_equal(read_idx(tmp_path / "x.idx"), [list(range(256))])


def test_read_idx_empty_array(tmp_path):
    (tmp_path / "x.idx").write_bytes(idx(0x0C, (0, 3), []))  # header only: zero items of 4 bytes
    assert read_idx(tmp_path / "x.idx").shape == (0, 3)


def test_read_idx_zero_dimensions_hold_one_value(tmp_path):
    (tmp_path / "x.idx").write_bytes(idx(0x08, (), [7]))
    assert read_idx(tmp_path / "x.idx").tolist() == 7


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([(0x08, "u1"), (0x09, "i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")]),
       st.lists(st.integers(0, 4), max_size=3), st.data())
def test_read_idx_reads_back_what_a_plain_writer_wrote(kind, dims, data):
    type_code, dtype = kind
    values = data.draw(arrays(np.dtype(dtype), tuple(dims), elements={"allow_nan": False} if "f" in dtype else None))
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/x.idx"
        with open(path, "wb") as handle:
            handle.write(idx(type_code, dims, values.astype(dtype).tobytes()))
        np.testing.assert_array_equal(read_idx(path), values)


@pytest.mark.parametrize("content", [
    b"",
    b"\x00\x00\x08",  # shorter than the magic number
    b"\x01\x00\x08\x01\x00\x00\x00\x01\x05",  # first byte not zero
    b"\x00\x01\x08\x01\x00\x00\x00\x01\x05",  # second byte not zero
    b"\x00\x00\x0A\x01\x00\x00\x00\x01\x05",  # no such type
    b"\x89PNG\r\n\x1a\n",
])
def test_read_idx_refuses_what_is_not_idx(tmp_path, content):
    (tmp_path / "x.idx").write_bytes(content)
    with pytest.raises(UsageError) as failure:
        read_idx(tmp_path / "x.idx")
    assert str(failure.value) == f"{tmp_path / 'x.idx'} is not an IDX file"


@pytest.mark.parametrize("content, promise", [
    (idx(0x08, (2, 3), range(5)), "header promises (2, 3)"),  # one byte short
    (idx(0x08, (2, 3), range(7)), "header promises (2, 3)"),  # one byte too many
    (idx(0x0B, (2,), [0, 1, 0]), "header promises (2,)"),  # half a 16-bit value
    (idx(0x08, (), []), "header promises ()"),  # the magic number alone
    (idx(0x08, (2, 3), [])[:10], "header promises 2 dimensions"),  # cut inside the sizes
    (idx(0x08, (1,), [])[:4], "header promises 1 dimensions"),
])
def test_read_idx_truncated_or_padded_is_a_usage_error(tmp_path, content, promise):
    (tmp_path / "x.idx").write_bytes(content)
    with pytest.raises(UsageError) as failure:
        read_idx(tmp_path / "x.idx")
    assert str(failure.value).startswith(f"{tmp_path / 'x.idx'} is truncated") and promise in str(failure.value)


@pytest.mark.parametrize("content", [b"garbage", gzip.compress(idx(0x08, (2,), [1, 2]))[:-6]],
                         ids=["garbage", "truncated-gzip"])
def test_read_idx_broken_gzip_is_one_line(tmp_path, content):
    (tmp_path / "x.idx.gz").write_bytes(content)
    with pytest.raises(SkdeployError, match=f"^cannot read IDX file {tmp_path / 'x.idx.gz'}: "):
        read_idx(tmp_path / "x.idx.gz")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(SkdeployError, match="cannot read IDX file .*missing.idx: .*No such file"):
        read_idx(tmp_path / "missing.idx")


def test_load_fashion_mnist_picks_the_split_files(tmp_path):
    for prefix, first in (("train", 1), ("t10k", 5)):
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx(0x08, (2, 1, 2), [first, first, first + 1, first + 1])))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(0x08, (2,), [first, 9])))
    for split, first in (("train", 1), ("test", 5), ("t10k", 5)):
        images, labels = load_fashion_mnist(split, root=tmp_path)
        np.testing.assert_array_equal(images, [[[first, first]], [[first + 1, first + 1]]])
        assert labels.dtype == np.int64 and labels.tolist() == [first, 9]


def test_load_fashion_mnist_missing_names_the_package(tmp_path):
    with pytest.raises(SkdeployError, match="sudo apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", root=tmp_path)


# ---- dataset readers ---------------------------------------------------------------------------------------
SHAPE = InputShape(1, 1, 2)


def gray_preprocessing(what):
    return raw(1, (1, 2))


def no_preprocessing(what):
    raise UsageError(f"{what} need `mean` and `std`")


def save_png(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    picture(values).save(path)


def test_input_shape_reads_c_x_h_x_w():
    assert str(InputShape(3, 224, 192)) == "3x224x192"


def test_image_folder_subfolders_are_classes(tmp_path):
    save_png(tmp_path / "cat" / "b.png", [[1, 2]])
    save_png(tmp_path / "ant" / "a.PNG", [[3, 4]])
    save_png(tmp_path / "cat" / "a.png", [[5, 6]])
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    # the model's classes, one of them (bee) absent: each folder is its class's index, not its position
    source = open_source(tmp_path, SHAPE, gray_preprocessing, class_names=("bee", "Cat", "ANT"))
    assert len(source) == 3 and source.class_names == ("bee", "Cat", "ANT")
    assert source.labels.dtype == np.int64 and source.labels.tolist() == [2, 1, 1]  # ant/a, cat/a, cat/b
    assert [source.sample(i)[0, 0].tolist() for i in range(3)] == [[3, 4], [5, 6], [1, 2]]
    assert source.description == f"image folder {tmp_path} (3 images)"
    with pytest.raises(UsageError, match=r"class folder 'ant' in .* is not the model's class index; name each"):
        open_source(tmp_path, SHAPE, gray_preprocessing)  # no class names to map them to


def test_image_folder_class_indices_are_checked_against_the_classes(tmp_path):
    save_png(tmp_path / "3" / "a.png", [[1, 2]])
    save_png(tmp_path / "12" / "b.png", [[3, 4]])
    assert open_source(tmp_path, SHAPE, gray_preprocessing).labels.tolist() == [12, 3]
    with pytest.raises(UsageError, match=r"class folder '12' in .* is not the model's class index 0-9"):
        open_source(tmp_path, SHAPE, gray_preprocessing, classes=10)


def test_image_folder_reads_every_image_suffix_in_any_case(tmp_path):
    for name in ("a.jpg", "b.JPEG", "c.png", "d.bmp", "e.webp", "f.gif", "g.tiff"):
        save_png(tmp_path / name, [[1, 2]])  # Pillow reads by content; the suffix decides what is listed
    (tmp_path / "h.txt").write_text("not a picture format")
    source = open_source(tmp_path, SHAPE, gray_preprocessing)
    assert [p.name for p in source.files] == ["a.jpg", "b.JPEG", "c.png", "d.bmp", "e.webp", "f.gif", "g.tiff"]
    assert source.skipped_files == 1


@pytest.mark.parametrize("layout", [["a.png", "b.png"], ["top.png", "cls/x.png"], ["cls/deep/x.png", "cls/y.png"]])
def test_image_folder_without_one_level_of_class_folders_has_no_labels(tmp_path, layout):
    for name in layout:
        save_png(tmp_path / name, [[1, 2]])
    source = open_source(tmp_path, SHAPE, gray_preprocessing)
    assert len(source) == 2 and source.labels is None and source.class_names is None


@pytest.mark.parametrize("others, found", [(["a.txt"], "found 1 other file)"),
                                           (["a.txt", "b.csv"], "found 2 other files)"),
                                           ([], "found 0 other files)")])
def test_image_folder_without_images_counts_the_other_files(tmp_path, others, found):
    for name in others:
        (tmp_path / name).write_text("x")
    with pytest.raises(UsageError, match=f"^no images in {tmp_path} .*{found.replace(')', '[)]')}$"):
        open_source(tmp_path, SHAPE, gray_preprocessing)


def test_image_folder_with_idx_files_points_at_the_file(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"x")
    with pytest.raises(UsageError, match="; for IDX files pass the \\*-images-idx3-ubyte file itself$"):
        open_source(tmp_path, SHAPE, gray_preprocessing)


def test_image_folder_unreadable_image_is_a_skippable_sample(tmp_path):
    save_png(tmp_path / "good.png", [[1, 2]])
    (tmp_path / "zbroken.png").write_bytes(b"not a png")
    source = open_source(tmp_path, SHAPE, gray_preprocessing)
    assert source.sample(0)[0, 0].tolist() == [1, 2]
    with pytest.raises(UnreadableSample, match="zbroken.png"):
        source.sample(1)


@pytest.mark.parametrize("pixels, expected", [
    (np.array([[[1, 2]], [[3, 4]]], np.uint8), [[1, 2], [3, 4]]),  # (N, H, W)
    (np.array([[[[1], [2]]], [[[3], [4]]]], np.uint8), [[1, 2], [3, 4]]),  # (N, H, W, 1)
    (np.array([[[RED, BLUE]], [[GREEN, GREEN]]], np.uint8), [[76, 29], [150, 150]]),  # (N, H, W, 3) -> luma
    (np.array([[[RED + (0,), BLUE + (9,)]], [[GREEN + (255,)] * 2]], np.uint8), [[76, 29], [150, 150]]),  # RGBA
])
def test_uint8_arrays_are_preprocessed(tmp_path, pixels, expected):
    np.save(tmp_path / "x.npy", pixels)
    source = open_source(tmp_path / "x.npy", SHAPE, gray_preprocessing)
    assert len(source) == 2 and source.labels is None and source.pictures is not None
    assert [source.sample(i)[0, 0].tolist() for i in range(2)] == expected


def test_float_arrays_are_model_inputs_and_need_no_preprocessing(tmp_path):
    inputs = np.array([[[[0.5, -1.25]]], [[[3.0, 0.0]]]], np.float64)
    np.save(tmp_path / "x.npy", inputs)
    source = open_source(tmp_path / "x.npy", SHAPE, no_preprocessing)
    sample = source.sample(1)
    assert sample.dtype == np.float32 and sample.tolist() == [[[3.0, 0.0]]]
    assert source.description == f"{tmp_path / 'x.npy'} (2 samples)"


def test_uint8_arrays_ask_for_preprocessing(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 2), np.uint8))
    with pytest.raises(UsageError, match=f"^uint8 pictures in {tmp_path / 'x.npy'} need `mean`"):
        open_source(tmp_path / "x.npy", SHAPE, no_preprocessing)


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 1, 2, 2), np.uint8), "holds uint8 pictures of shape (1, 2, 2); expected (H, W) or (H, W, C)"),
    (np.zeros((2, 2), np.uint8), "holds uint8 pictures of shape (2,)"),
    (np.zeros((2, 1, 2, 3), np.float32), "holds float arrays of shape (2, 1, 2, 3); the model takes (N, 1, 1, 2)"),
    (np.zeros((2, 1, 2), np.float32), "holds float arrays of shape (2, 1, 2)"),
    (np.zeros((2, 1, 1, 2), np.int16), "has dtype int16; expected uint8 pictures or float32 model inputs"),
])
def test_arrays_of_the_wrong_shape_or_type(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(UsageError) as failure:
        open_source(tmp_path / "x.npy", SHAPE, gray_preprocessing)
    assert message in str(failure.value)


def test_npz_prefers_the_named_sample_array_and_reads_labels(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 1, 1, 2), np.float32), images=np.ones((2, 1, 1, 2), np.float32),
             y=np.array([4, 2], np.uint8))
    source = open_source(tmp_path / "x.npz", SHAPE, no_preprocessing)
    assert len(source) == 2 and source.labels.dtype == np.int64 and source.labels.tolist() == [4, 2]


@pytest.mark.parametrize("samples_key", ["images", "inputs", "x", "data"])
@pytest.mark.parametrize("labels_key", ["labels", "y", "targets"])
def test_npz_sample_and_label_names(tmp_path, samples_key, labels_key):
    np.savez(tmp_path / "x.npz", other=np.zeros((5, 1, 1, 2), np.float32),
             **{samples_key: np.ones((2, 1, 1, 2), np.float32), labels_key: np.array([1, 0])})
    source = open_source(tmp_path / "x.npz", SHAPE, no_preprocessing)
    assert len(source) == 2 and source.labels.tolist() == [1, 0]


def test_npz_with_one_unnamed_array_uses_it(tmp_path):
    np.savez(tmp_path / "x.npz", whatever=np.full((3, 1, 1, 2), 0.25, np.float32))
    source = open_source(tmp_path / "x.npz", SHAPE, no_preprocessing)
    assert len(source) == 3 and source.labels is None and source.sample(2).tolist() == [[[0.25, 0.25]]]


def test_npz_with_unnamed_arrays_lists_the_names(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(1), b=np.zeros(1))
    with pytest.raises(UsageError, match=r"has arrays \['a', 'b'\]; name the samples one of \['images'"):
        open_source(tmp_path / "x.npz", SHAPE, no_preprocessing)


def test_labels_must_match_the_samples(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((3, 1, 1, 2), np.float32), labels=np.array([0, 1]))
    with pytest.raises(UsageError, match="2 labels for 3 samples$"):
        open_source(tmp_path / "x.npz", SHAPE, no_preprocessing)


def test_corrupt_numpy_file(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UsageError, match=f"^cannot read {tmp_path / 'x.npy'} as a numpy file"):
        open_source(tmp_path / "x.npy", SHAPE, no_preprocessing)


def test_idx_images_take_labels_from_the_sibling_file(tmp_path):
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(idx(0x08, (2, 1, 2), [1, 2, 3, 4])))
    source = open_source(images, SHAPE, gray_preprocessing)
    assert source.labels is None  # no labels file yet
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(0x08, (2,), [7, 3])))
    source = open_source(images, SHAPE, gray_preprocessing)
    assert source.labels.tolist() == [7, 3] and source.sample(1)[0, 0].tolist() == [3, 4]


@pytest.mark.parametrize("name", ["data.idx", "data.idx.gz"])
def test_plain_idx_file_is_not_its_own_labels(tmp_path, name):
    content = idx(0x08, (2, 1, 2), [1, 2, 3, 4])
    (tmp_path / name).write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    source = open_source(tmp_path / name, SHAPE, gray_preprocessing)
    assert len(source) == 2 and source.labels is None


@pytest.mark.parametrize("name, message", [
    ("missing.npy", "`data={path}` does not exist"),
    ("photo.JPG", "`data={path}` is a single image; give the folder that holds the images"),
    ("table.csv", "`data={path}`: unknown format"),
])
def test_open_source_refusals_name_the_argument(tmp_path, name, message):
    path = tmp_path / name
    if name != "missing.npy":
        path.write_bytes(b"x")
    with pytest.raises(UsageError) as failure:
        open_source(path, SHAPE, gray_preprocessing, argument="data")
    assert str(failure.value).startswith(message.format(path=path))


# ---- raw pixels and layout (preprocessing inside the graph) -------------------------------------
def _two_by_three_rgb():
    """A 2x3 RGB picture whose pixel (row r, column c, channel k) is 10*r + 3*c + k + 1."""
    from PIL import Image

    values = np.array([[[10 * r + 3 * c + k + 1 for k in range(3)] for c in range(3)] for r in range(2)], np.uint8)
    return Image.fromarray(values), values


def test_layout_nhwc_puts_channels_last_and_bgr_reverses_them():
    image, values = _two_by_three_rgb()
    prep = Preprocessing(resize=2, crop=(2, 3), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channel_order="BGR",
                         scale=1.0, layout="NHWC")
    out = prep(image)
    assert out.shape == (2, 3, 3) and out.dtype == np.float32
    assert out[1, 2].tolist() == [10 + 6 + 3, 10 + 6 + 2, 10 + 6 + 1]  # row 1, column 2: B, G, R


def test_in_graph_inputs_are_the_raw_pixels_in_the_raw_dtype():
    image, values = _two_by_three_rgb()
    prep = Preprocessing(resize=2, crop=(2, 3), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), in_graph=True)
    out = prep(image)
    assert out.dtype == np.uint8 and out.shape == (3, 2, 3)
    assert out[:, 0, 1].tolist() == [4, 5, 6]
    assert prep.input_shape == (3, 2, 3) and prep.input_dtype == np.uint8
    nhwc = prep.in_graph_form("NHWC", "float32")
    assert nhwc.input_shape == (2, 3, 3) and nhwc(image).dtype == np.float32 and nhwc(image)[0, 1].tolist() == [4, 5, 6]


def test_reference_inputs_normalize_raw_pixels_by_hand():
    prep = Preprocessing(resize=1, crop=(1, 2), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0), scale=0.01,
                         layout="NHWC", in_graph=True)
    raw = np.array([[[[100, 50, 0], [0, 25, 200]]]], np.uint8)  # N=1, H=1, W=2, C=3
    # channel 0: (1.0 - 0.5)/0.5 = 1, (0 - 0.5)/0.5 = -1; channel 1: (0.5-0.25)/0.25 = 1, (0.25-0.25)/0.25 = 0;
    # channel 2: (0 - 0)/2 = 0, (2 - 0)/2 = 1
    expected = [[[[1.0, -1.0]], [[1.0, 0.0]], [[0.0, 1.0]]]]
    np.testing.assert_allclose(prep.reference_inputs(raw), expected, rtol=1e-6)
    normalized_nchw = Preprocessing(resize=1, crop=(1, 2), mean=(0.0,), std=(1.0,), channel_order="GRAY")
    already = np.full((2, 1, 1, 2), 0.75, np.float32)
    assert normalized_nchw.reference_inputs(already).tolist() == already.tolist()


def test_raw_pixels_then_normalized_is_the_normalized_input_bit_for_bit():
    image, _ = _two_by_three_rgb()
    prep = Preprocessing(resize=2, crop=(2, 3), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    raw = prep.in_graph_form()(image)[None]
    assert np.array_equal(prep.reference_inputs(prep(image)[None]), prep.in_graph_form().reference_inputs(raw))


@pytest.mark.parametrize("field, value", [("layout", "HWC"), ("raw_dtype", "int8")])
def test_unknown_layout_or_raw_dtype_is_a_usage_error(field, value):
    with pytest.raises(UsageError, match=f"`{field}` must be"):
        Preprocessing(resize=1, crop=(1, 1), mean=(0.0,), std=(1.0,), **{field: value})


# ---- the same samples in another input form (raw pixels or normalized, layout, dtype) -------------------
def test_convert_normalized_to_raw_nhwc_uint8_and_back_by_hand():
    normalized = Preprocessing(resize=2, crop=(2, 2), mean=(0.5,), std=(0.25,), channel_order="GRAY")
    raw = normalized.in_graph_form(layout="NHWC", raw_dtype="uint8")
    pixels = np.array([[[[0.0, 51.0], [127.4, 255.0]]]], np.float32)  # (1, 1, 2, 2)
    inputs = (pixels / 255 - 0.5) / 0.25  # by hand: what the normalized model takes
    as_raw = normalized.convert(inputs, raw)
    assert as_raw.dtype == np.uint8 and as_raw.shape == (1, 2, 2, 1)
    assert as_raw[0, :, :, 0].tolist() == [[0, 51], [127, 255]]  # 127.4 rounds to a whole level
    back = raw.convert(as_raw, normalized)
    np.testing.assert_allclose(back, (np.array([[[[0, 51], [127, 255]]]]) / 255 - 0.5) / 0.25, atol=1e-6)


def test_convert_to_the_same_form_returns_the_inputs_untouched():
    normalized = Preprocessing(resize=2, crop=(2, 2), mean=(0.5,), std=(0.25,), channel_order="GRAY")
    inputs = np.zeros((1, 1, 2, 2), np.float32)
    assert normalized.convert(inputs, normalized) is inputs

