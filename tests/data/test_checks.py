"""shared_kd.data.checks: datasets checked before training, with errors that name the fix."""

import json

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from shared_kd.data.checks import DatasetError, check_datasets, dataset_error


@pytest.fixture
def register(request):
    """Register ``dicts`` (a list, or a function that loads them) under a test-unique name."""
    names = []

    def register_(suffix, dicts, json_file=None):
        name = f"checks_{request.node.name}_{suffix}"
        DatasetCatalog.register(name, dicts if callable(dicts) else lambda: dicts)
        if json_file is not None:
            MetadataCatalog.get(name).set(json_file=str(json_file))
        names.append(name)
        return name

    yield register_
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.pop(name, None)  # (made only where a test read it)


def _raise(error):
    def load():
        raise error

    return load


def test_the_number_of_images_of_each(register, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    two = register("two", [{"file_name": str(image)}, {"file_name": str(tmp_path / "gone.png")}])
    remote = register("remote", [{"file_name": "s3://bucket/a.png"}])  # URLs are not looked up
    unnamed = register("unnamed", [{}, {}, {}])
    assert check_datasets([two, remote, unnamed], "DATASETS.TEST") == [2, 1, 3]
    assert check_datasets([], "DATASETS.TEST") == []


def test_a_dataset_without_images(register):
    name = register("empty", [])
    with pytest.raises(DatasetError, match=rf"^DATASETS.TEST names '{name}', which has no images"):
        check_datasets([name], "DATASETS.TEST")


def test_a_load_error_is_wrapped_with_what_is_wrong_with_the_annotation_file(register, tmp_path):
    coco = tmp_path / "ann.json"
    coco.write_text(json.dumps({"images": [{"id": 1}], "categories": []}))
    name = register("no_categories", _raise(KeyError("annotations")), json_file=coco)
    with pytest.raises(DatasetError) as info:
        check_datasets([name], "DATASETS.TRAIN")
    message = str(info.value)
    assert message.startswith(
        f"DATASETS.TRAIN ['{name}'] cannot be loaded ('{name}': its annotation file "
        f"'{coco}' has no 'categories'): KeyError: 'annotations'. Check that each dataset is "
        "registered"
    )
    assert isinstance(info.value.__cause__, KeyError)


def test_other_errors_are_not_wrapped(register):
    name = register("bug", _raise(ZeroDivisionError("a bug in the loader")))
    with pytest.raises(ZeroDivisionError):
        check_datasets([name], "DATASETS.TRAIN")


def test_dataset_error_diagnoses_each_annotation_file(register, tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    valid = tmp_path / "valid.json"
    valid.write_text(json.dumps({"images": [{"id": 1}], "categories": [{"id": 1}]}))
    not_dict = register("list", [], json_file=listed)
    missing = register("missing", [], json_file=tmp_path / "nowhere.json")
    fine = register("fine", [], json_file=valid)
    in_code = register("in_code", [])  # no json_file: nothing to diagnose
    error = dataset_error(
        [not_dict, missing, fine, in_code], "DATASETS.TEST", ValueError("first line\nsecond")
    )
    assert isinstance(error, DatasetError)
    assert str(error).startswith(
        f"DATASETS.TEST {[not_dict, missing, fine, in_code]} cannot be loaded "
        f"('{not_dict}': its annotation file '{listed}' is not a COCO dict; "
        f"'{missing}': its annotation file '{tmp_path / 'nowhere.json'}' does not exist): "
        "ValueError: first line. Check"
    )
    assert "second" not in str(error)
    # nothing found, and an error without a message
    assert str(dataset_error([in_code], "K", OSError())).startswith(
        f"K ['{in_code}'] cannot be loaded: OSError: . "
    )
