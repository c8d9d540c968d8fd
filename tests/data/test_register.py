"""DATASETS.COCO_INSTANCES: a user's own COCO-format datasets, registered from the config."""

import itertools
import json
import os

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from shared_kd.config import add_sharedkd_config
from shared_kd.data import DatasetError
from shared_kd.data.register import (
    absolute_dataset_paths,
    check_num_classes,
    model_num_classes,
    register_config_datasets,
)

from ..coco_subset import shapes_root, write_coco_subset

_count = itertools.count()


def _cfg(*entries):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.DATASETS.COCO_INSTANCES = [list(e) for e in entries]
    return cfg


@pytest.fixture
def new_name(request):
    """Unique dataset names; whatever a test registers under them is removed afterwards."""
    names = []

    def make(prefix="mine"):
        names.append(f"test_register_{prefix}_{os.getpid()}_{next(_count)}")
        return names[-1]

    yield make
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


@pytest.fixture
def coco(tmp_path):
    """A 4-image COCO json (3 categories) and its image folder, in tmp_path."""
    return write_coco_subset(str(tmp_path), "subset", split="val", num_images=4, first=2)


def test_registers_the_json_and_its_images(coco, new_name):
    json_file, image_root = coco
    name = new_name()
    assert register_config_datasets(_cfg([name, json_file, image_root])) == [name]

    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 4
    assert sorted(d["image_id"] for d in dicts) == [1, 2, 3, 4]
    with open(json_file) as f:
        content = json.load(f)
    assert sum(len(d["annotations"]) for d in dicts) == len(content["annotations"]) > 0
    for d in dicts:
        assert os.path.dirname(d["file_name"]) == image_root and os.path.isfile(d["file_name"])
        assert (d["height"], d["width"]) == (128, 128)
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "coco"  # COCOEvaluator for DATASETS.TEST
    assert meta.json_file == json_file and meta.image_root == image_root
    assert meta.thing_classes == ["circle", "square", "triangle"]  # set by loading the json


def test_registers_several_and_relative_paths_from_the_current_directory(
    tmp_path, monkeypatch, new_name
):
    train = write_coco_subset(str(tmp_path), "train", num_images=3)
    val = write_coco_subset(str(tmp_path), "val", split="val", num_images=2)
    monkeypatch.chdir(tmp_path)
    names = [new_name("train"), new_name("val")]
    cfg = _cfg(
        [names[0], "annotations/train.json", "train"], [names[1], "annotations/val.json", "val"]
    )
    assert register_config_datasets(cfg) == names
    assert MetadataCatalog.get(names[0]).json_file == train[0]  # stored absolute
    assert MetadataCatalog.get(names[1]).image_root == val[1]
    assert [len(DatasetCatalog.get(n)) for n in names] == [3, 2]


def test_registering_the_same_json_again_is_a_no_op(coco, tmp_path, monkeypatch, new_name):
    json_file, image_root = coco
    name = new_name()
    cfg = _cfg([name, json_file, image_root])
    assert register_config_datasets(cfg) == [name]
    loader = DatasetCatalog[name]  # the registered loading function
    assert register_config_datasets(cfg) == []  # e.g. setup() after load_config, or DDP
    # The same file by a relative path is the same dataset.
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(json_file)
    assert register_config_datasets(_cfg([name, relative, image_root])) == []
    assert DatasetCatalog[name] is loader  # not registered again
    assert len(DatasetCatalog.get(name)) == 4


def test_an_empty_list_registers_nothing():
    before = set(DatasetCatalog.list())
    assert register_config_datasets(_cfg()) == []
    assert set(DatasetCatalog.list()) == before


FIX = r"\[name, annotation json, image folder\] \(three non-empty strings\)"


@pytest.mark.parametrize(
    "entry",
    [
        "mine_train",  # a flat list of names instead of a list of entries
        ["mine_train", "train.json"],
        ["mine_train", "train.json", "images", "extra"],
        ["", "train.json", "images"],
        ["mine_train", "", "images"],
        ["mine_train", "train.json", 3],
        [None, "train.json", "images"],
    ],
    ids=["string", "two", "four", "empty name", "empty json", "number", "none"],
)
def test_malformed_entries_are_refused(entry):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.DATASETS.COCO_INSTANCES = [entry]
    before = set(DatasetCatalog.list())
    with pytest.raises(DatasetError, match="DATASETS.COCO_INSTANCES entries must be " + FIX) as e:
        register_config_datasets(cfg)
    assert repr(entry) in str(e.value)  # names the bad entry
    assert "Example: DATASETS.COCO_INSTANCES" in str(e.value)  # and shows a good one
    with pytest.raises(DatasetError, match=FIX):
        absolute_dataset_paths(cfg)
    assert set(DatasetCatalog.list()) == before


def test_a_missing_annotation_file(tmp_path, coco, new_name):
    name = new_name()
    missing = str(tmp_path / "no" / "such.json")
    with pytest.raises(DatasetError) as e:
        register_config_datasets(_cfg([name, missing, coco[1]]))
    message = str(e.value)
    assert message.startswith("DATASETS.COCO_INSTANCES: the annotation file of ")
    assert f"{name!r}, {missing!r}, does not exist" in message
    assert "relative paths are read from the current directory" in message
    assert name not in DatasetCatalog.list()


def test_a_missing_image_folder(tmp_path, coco, new_name):
    name = new_name()
    missing = str(tmp_path / "no_images")
    with pytest.raises(DatasetError) as e:
        register_config_datasets(_cfg([name, coco[0], missing]))
    message = str(e.value)
    assert f"the image folder of {name!r}, {missing!r}, does not exist" in message
    assert "relative paths are read from the current directory" in message
    assert name not in DatasetCatalog.list()


def test_an_image_file_is_not_a_folder(coco, new_name):
    image = os.path.join(coco[1], os.listdir(coco[1])[0])
    with pytest.raises(DatasetError, match="image folder of .* does not exist"):
        register_config_datasets(_cfg([new_name(), coco[0], image]))


@pytest.mark.parametrize("taken", ["shapes_train", "coco_2017_train"])
def test_a_builtin_name_is_refused(coco, taken):
    registered_json = MetadataCatalog.get(taken).json_file
    with pytest.raises(DatasetError) as e:
        register_config_datasets(_cfg([taken, *coco]))
    message = str(e.value)
    assert f"DATASETS.COCO_INSTANCES names {taken!r}, which is already a registered" in message
    assert registered_json in message  # says what holds the name
    assert "Give yours another name" in message
    assert MetadataCatalog.get(taken).json_file == registered_json  # untouched


def test_a_name_taken_by_another_json_or_by_code(tmp_path, coco, new_name):
    name = new_name()
    register_config_datasets(_cfg([name, *coco]))
    other = write_coco_subset(str(tmp_path), "other", num_images=2)
    with pytest.raises(DatasetError, match=f"names {name!r}, which is already a registered"):
        register_config_datasets(_cfg([name, *other]))
    assert MetadataCatalog.get(name).json_file == coco[0]

    in_code = new_name("code")
    DatasetCatalog.register(in_code, lambda: [])
    with pytest.raises(DatasetError, match=r"already a registered dataset \(registered in code\)"):
        register_config_datasets(_cfg([in_code, *coco]))


def test_the_shapes_dataset_itself_can_be_named_again_by_its_own_json():
    # shapes_train's own files: the same dataset, so nothing to do and no error.
    root = shapes_root()
    json_file = os.path.join(root, "annotations", "instances_train.json")
    if os.path.abspath(MetadataCatalog.get("shapes_train").json_file) != json_file:
        pytest.skip("shapes_train is registered from another DETECTRON2_DATASETS root")
    assert register_config_datasets(_cfg(["shapes_train", json_file, root + "/train"])) == []


def test_absolute_dataset_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(
        ["a", "ann/a.json", "img/a"],
        ("b", "/abs/b.json", "../up/b"),
    )
    absolute_dataset_paths(cfg)
    assert cfg.DATASETS.COCO_INSTANCES == [
        ["a", str(tmp_path / "ann" / "a.json"), str(tmp_path / "img" / "a")],
        ["b", "/abs/b.json", str(tmp_path.parent / "up" / "b")],
    ]
    absolute_dataset_paths(cfg)  # idempotent
    assert cfg.DATASETS.COCO_INSTANCES[0][1] == str(tmp_path / "ann" / "a.json")
    # The result is a valid config value (dumps and merges back).
    again = _cfg()
    again.merge_from_other_cfg(type(cfg).load_cfg(cfg.dump()))
    assert again.DATASETS.COCO_INSTANCES == cfg.DATASETS.COCO_INSTANCES

    empty = _cfg()
    absolute_dataset_paths(empty)
    assert empty.DATASETS.COCO_INSTANCES == []


def test_entries_from_the_command_line_and_yaml(tmp_path, coco, new_name):
    name = new_name()
    cfg = _cfg()
    cfg.merge_from_list(["DATASETS.COCO_INSTANCES", str([[name, coco[0], coco[1]]])])
    assert cfg.DATASETS.COCO_INSTANCES == [[name, *coco]]
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(
        f"DATASETS:\n  COCO_INSTANCES: [['{name}', '{coco[0]}', '{coco[1]}']]\n"
        f"  TRAIN: ('{name}',)\n"
    )
    from_yaml = _cfg()
    from_yaml.merge_from_file(str(yaml_file))
    assert register_config_datasets(from_yaml) == [name]


# ---- number of classes --------------------------------------------------------------------


@pytest.fixture
def three_and_five(tmp_path, new_name):
    """Two registered datasets: one with 3 categories, one with 5."""
    names = {}
    for n in (3, 5):
        names[n] = new_name(f"cats{n}")
        files = write_coco_subset(str(tmp_path), f"c{n}", num_images=2, num_categories=n)
        register_config_datasets(_cfg([names[n], *files]))
    return names


def _model_cfg(arch, roi=3, retina=3, fcos=3, student=None):
    cfg = _cfg()
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = roi
    cfg.MODEL.RETINANET.NUM_CLASSES = retina
    cfg.MODEL.FCOS.NUM_CLASSES = fcos
    if student:
        cfg.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = student
    return cfg


def test_matching_class_counts_pass(three_and_five):
    check_num_classes(_model_cfg("GeneralizedRCNN"), [three_and_five[3]], "DATASETS.TRAIN")
    check_num_classes(_model_cfg("GeneralizedRCNN", roi=5), [three_and_five[5]], "DATASETS.TRAIN")
    check_num_classes(_model_cfg("GeneralizedRCNN"), ["shapes_val"], "DATASETS.TEST")
    check_num_classes(_model_cfg("GeneralizedRCNN"), [], "DATASETS.TEST")


@pytest.mark.parametrize(
    "cfg_args, key",
    [
        (("GeneralizedRCNN",), "MODEL.ROI_HEADS.NUM_CLASSES"),
        (("RetinaNet", 5), "MODEL.RETINANET.NUM_CLASSES"),  # ROI_HEADS would fit: not read
        (("FCOS", 5, 5), "MODEL.FCOS.NUM_CLASSES"),
        (("DistillationDetector", 3, 5, 5, "GeneralizedRCNN"), "MODEL.ROI_HEADS.NUM_CLASSES"),
        (("DistillationDetector", 5, 3, 5, "RetinaNet"), "MODEL.RETINANET.NUM_CLASSES"),
        (("DistillationDetector", 5, 5, 3, "FCOS"), "MODEL.FCOS.NUM_CLASSES"),
    ],
    ids=["rcnn", "retinanet", "fcos", "distill rcnn", "distill retinanet", "distill fcos"],
)
def test_a_class_count_mismatch_names_the_key_to_set(three_and_five, cfg_args, key):
    cfg = _model_cfg(*cfg_args)
    assert model_num_classes(cfg) == (key, 3)
    name = three_and_five[5]
    with pytest.raises(DatasetError) as e:
        check_num_classes(cfg, ["shapes_train", name], "DATASETS.TRAIN")
    assert str(e.value) == (
        f"DATASETS.TRAIN names {name!r}, whose annotation file has 5 categories, but the "
        f"model has 3 classes ({key}). Set {key} 5."
    )
    check_num_classes(cfg, [three_and_five[3]], "DATASETS.TRAIN")  # 3 categories: fine


def test_the_student_decides_not_the_distillers_own_keys(three_and_five):
    # A RetinaNet student with 5 classes: the (unused) ROI_HEADS count of 3 does not matter.
    cfg = _model_cfg("DistillationDetector", roi=3, retina=5, student="RetinaNet")
    check_num_classes(cfg, [three_and_five[5]], "DATASETS.TEST")
    with pytest.raises(DatasetError, match=r"\(MODEL.RETINANET.NUM_CLASSES\). Set .* 3\."):
        check_num_classes(cfg, [three_and_five[3]], "DATASETS.TEST")


@pytest.mark.parametrize("arch", ["SemanticSegmentor", "TeacherAutoEncoder", "PanopticFPN"])
def test_an_unknown_meta_architecture_is_not_checked(three_and_five, arch):
    cfg = _model_cfg(arch, roi=7, retina=7, fcos=7)
    assert model_num_classes(cfg) == (None, None)
    check_num_classes(cfg, [three_and_five[3], three_and_five[5]], "DATASETS.TRAIN")


def test_datasets_without_a_readable_json_are_left_to_the_other_checks(tmp_path, new_name):
    in_code = new_name("code")
    DatasetCatalog.register(in_code, lambda: [])
    broken = new_name("broken")
    files = write_coco_subset(str(tmp_path), "broken", num_images=1)
    register_config_datasets(_cfg([broken, *files]))
    with open(files[0], "w") as f:
        f.write("{not json")
    cfg = _model_cfg("GeneralizedRCNN", roi=9)
    check_num_classes(cfg, [in_code, broken], "DATASETS.TRAIN")  # check_datasets reports these
