"""spine.data.dicom: the display pipeline on small synthetic DICOMs with known answers."""

import os

import numpy as np
import PIL.Image
import pytest
from pydicom import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, generate_uid

from spine.data import dicom

# A vertical ramp: row r holds stored value r * step, so "bone" (high attenuation) is the bottom.
ROWS, COLS = 64, 48  # big enough for the JPEG 2000 encoder's default resolutions


def ramp(bits: int) -> np.ndarray:
    top = 2**bits - 1
    return np.repeat(np.linspace(0, top, ROWS).round().astype(np.uint16)[:, None], COLS, axis=1)


def write_dicom(path, arr, photometric="MONOCHROME2", bits_stored=12, **tags):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName = "Doe^Jane"
    ds.set_pixel_data(arr, photometric_interpretation=photometric, bits_stored=bits_stored)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return ds


def expected_uint8(unit):
    return np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("bits", [12, 16])
def test_min_max_without_window(tmp_path, bits):
    arr = ramp(bits)
    write_dicom(tmp_path / "a.dcm", arr, bits_stored=bits)
    out = dicom.decode_dicom(tmp_path / "a.dcm")
    assert out.dtype == np.uint8 and out.shape == (ROWS, COLS)
    np.testing.assert_array_equal(out, expected_uint8(arr / arr.max()))


def test_monochrome1_is_inverted_to_match_monochrome2(tmp_path):
    arr = ramp(12)
    # MONOCHROME1 stores bone as low values: the same anatomy has stored values 4095 - x.
    write_dicom(tmp_path / "m2.dcm", arr, "MONOCHROME2")
    write_dicom(tmp_path / "m1.dcm", (4095 - arr).astype(np.uint16), "MONOCHROME1")
    m2, m1 = dicom.decode_dicom(tmp_path / "m2.dcm"), dicom.decode_dicom(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(m1, m2)
    assert m1[-1].mean() == 255 and m1[0].mean() == 0  # bone (bottom) bright


def test_rescale_then_linear_window(tmp_path):
    arr = ramp(12)
    slope, intercept, center, width = 2.0, -1000.0, 3000.0, 2001.0
    write_dicom(
        tmp_path / "w.dcm", arr, RescaleSlope=slope, RescaleIntercept=intercept, WindowCenter=center, WindowWidth=width
    )
    x = arr * slope + intercept
    # DICOM PS3.3 C.11.2.1.2.1 'LINEAR', written out in float64.
    ref = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    ref[x <= center - 0.5 - (width - 1) / 2] = 0
    ref[x > center - 0.5 + (width - 1) / 2] = 1
    np.testing.assert_array_equal(dicom.decode_dicom(tmp_path / "w.dcm"), expected_uint8(ref))


def test_voi_lut_sequence_preferred_over_window(tmp_path):
    arr = (ramp(12) // 16).astype(np.uint16)  # 0..255
    lut_item = Dataset()
    lut_item.LUTDescriptor = [256, 0, 16]
    lut_item.LUTData = [int(v) for v in (4095 - np.arange(256) * 16)]  # a decreasing LUT
    lut_item["LUTDescriptor"].VR = "US"
    lut_item["LUTData"].VR = "US"
    write_dicom(tmp_path / "lut.dcm", arr, VOILUTSequence=[lut_item], WindowCenter=10, WindowWidth=5)
    lut = np.array(lut_item.LUTData, dtype=np.float64)
    ref = (lut[arr] - lut[0]) / (lut[-1] - lut[0])
    np.testing.assert_array_equal(dicom.decode_dicom(tmp_path / "lut.dcm"), expected_uint8(ref))


def test_jpeg2000_round_trip(tmp_path):
    arr = ramp(12)
    ds = write_dicom(tmp_path / "raw.dcm", arr)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(dicom.decode_dicom(tmp_path / "j2k.dcm"), dicom.decode_dicom(tmp_path / "raw.dcm"))


def test_missing_decoder_names_the_package(tmp_path, monkeypatch):
    ds = write_dicom(tmp_path / "raw.dcm", ramp(12))
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)

    class NoDecoder:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg-openjpeg"]

    monkeypatch.setattr(dicom, "get_decoder", lambda _uid: NoDecoder())
    with pytest.raises(dicom.DecodeError, match="pylibjpeg-openjpeg"):
        dicom.decode_dicom(tmp_path / "j2k.dcm")


def test_unavailable_jpeg_ls_lists_plugins(tmp_path):
    # JPEG-LS has no decoder in this environment: the reason lists what would provide one.
    ds = write_dicom(tmp_path / "raw.dcm", ramp(12))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds["PixelData"].VR = "OB"
    ds.PixelData = (
        b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x04\x00\x00\x00abcd\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    ds["PixelData"].is_undefined_length = True
    ds.save_as(tmp_path / "jls.dcm", enforce_file_format=True)
    with pytest.raises(dicom.DecodeError, match="no decoder for JPEG-LS"):
        dicom.decode_dicom(tmp_path / "jls.dcm")


def test_truncated_file_is_a_decode_error(tmp_path):
    write_dicom(tmp_path / "full.dcm", ramp(12))
    data = (tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 300])
    with pytest.raises(dicom.DecodeError, match="truncated|unreadable") as info:
        dicom.decode_dicom(tmp_path / "cut.dcm")
    assert "Doe" not in info.value.reason


def test_not_a_dicom(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"hello")
    with pytest.raises(dicom.DecodeError, match="unreadable DICOM"):
        dicom.decode_dicom(tmp_path / "x.dcm")


def test_colour_dicom_refused(tmp_path):
    rgb = np.zeros([8, 8, 3], np.uint8)
    write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", bits_stored=8)
    with pytest.raises(dicom.DecodeError, match="MONOCHROME"):
        dicom.decode_dicom(tmp_path / "rgb.dcm")


def test_decode_image_dispatch(tmp_path):
    gray = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    PIL.Image.fromarray(gray, "L").save(tmp_path / "a.png")
    np.testing.assert_array_equal(dicom.decode_image(tmp_path / "a.png"), gray)
    wide = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    PIL.Image.fromarray(wide).save(tmp_path / "b.png")
    np.testing.assert_array_equal(dicom.decode_image(tmp_path / "b.png"), expected_uint8(wide / wide.max()))
    write_dicom(tmp_path / "noext", ramp(12))
    assert dicom.is_dicom_file(tmp_path / "noext") and not dicom.is_dicom_file(tmp_path / "a.png")
    assert dicom.decode_image(tmp_path / "noext").shape == (ROWS, COLS)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(dicom.DecodeError, match="unreadable image"):
        dicom.decode_image(os.fspath(tmp_path / "bad.png"))


def test_phantom_bone_bright_for_both_photometric_interpretations(tmp_path):
    # The phantom stores MAX_STORED - pixels for MONOCHROME1; after decoding, every image must
    # correlate positively with the phantom's own pixels (bone bright), whatever its rescale/window.
    import pydicom

    from spine.phantom.image import MAX_STORED
    from spine.phantom.tree import make_phantom_tree

    make_phantom_tree(str(tmp_path / "ph"), 12, 0, seed=2, size=64)
    seen = set()
    for name in sorted(os.listdir(tmp_path / "ph" / "train_images")):
        path = tmp_path / "ph" / "train_images" / name
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array.astype(np.float64)
        truth = MAX_STORED - stored if ds.PhotometricInterpretation == "MONOCHROME1" else stored
        decoded = dicom.decode_dicom(path).astype(np.float64)
        assert np.corrcoef(truth.ravel(), decoded.ravel())[0, 1] > 0.9, name
        seen.add(ds.PhotometricInterpretation)
    assert seen == {"MONOCHROME1", "MONOCHROME2"}
