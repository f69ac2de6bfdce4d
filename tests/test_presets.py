"""The dataset presets, each on a tree fabricated as its official archive unpacks
(tests/fabricate.py), and their refusals."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from fabricate import (
    ISIC,
    KVASIR,
    LONG,
    aptos2019,
    busi,
    chaoyang,
    covid_ct,
    image,
    isic2018,
    kvasir,
)
from helpers import dataset
from shpeft.data.prepared import PreparedDataset
from shpeft.data.prepared import prepare_dataset as prepare_step
from shpeft.errors import ShpeftError


def prepare(entry: dict, out: Path) -> dict:
    return prepare_step("d", dataset({"image_size": 16, **entry}), out)


def refused(entry: dict, out: Path, message: str) -> None:
    with pytest.raises(ShpeftError, match=message):
        prepare(entry, out)
    assert not out.exists()


# BUSI -------------------------------------------------------------------------------------------


def test_busi_skips_every_mask_and_draws_a_split(in_tmp):
    manifest = prepare(busi(in_tmp / "Dataset_BUSI_with_GT"), in_tmp / "out")
    assert manifest["class_names"] == ["benign", "malignant", "normal"]
    assert sum(manifest["sizes"].values()) == 15
    assert not any("_mask" in name for name in manifest["source_files"])
    assert "benign/benign (3).png" in manifest["source_files"]
    assert manifest["split_origin"].startswith("stratified (seed 0, val 0.15, test 0.15)")
    assert manifest["duplicates"]["duplicate_sets"] == 0


def test_busi_refusals(in_tmp):
    root = in_tmp / "Dataset_BUSI_with_GT"
    entry = busi(root)
    (root / "benign" / "benign (2).png").unlink()
    refused(entry, in_tmp / "out", r"benign \(2\)_mask\.png: segmentation mask without its image")
    image(root / "benign" / "benign (2).png")
    (root / "normal" / "notes.txt").write_text("x")
    refused(entry, in_tmp / "out", r"normal/notes\.txt: unexpected entry among the images")
    (root / "normal" / "notes.txt").unlink()
    for path in (root / "malignant").iterdir():
        path.unlink()
    refused(entry, in_tmp / "out", r"malignant: holds no image files")
    (root / "malignant").rmdir()
    refused(entry, in_tmp / "out", r"malignant: class folder not found")


def test_identical_images_in_two_splits_are_reported_or_refused(in_tmp):
    root = in_tmp / "Dataset_BUSI_with_GT"
    entry = busi(root, per_class=8)
    for name in ("benign", "malignant", "normal"):  # (1) copied to (2)..(8): in every split
        for i in range(2, 9):
            (root / name / f"{name} ({i}).png").write_bytes(
                (root / name / f"{name} (1).png").read_bytes()
            )
    (root / "normal" / "normal (5).png").write_bytes(
        (root / "benign" / "benign (1).png").read_bytes()
    )
    report = prepare(entry, in_tmp / "out")["duplicates"]
    assert report["duplicate_sets"] == 3 and report["duplicate_images"] == 24
    assert report["sets_across_splits"] == 3 == len(report["across_splits"])
    assert report["sets_with_differing_labels"] == 1  # normal (5) is a benign image
    listed = report["across_splits"][0]
    assert listed["images"][:2] == ["benign/benign (1).png", "benign/benign (2).png"]
    assert set(listed["splits"]) == {"train", "val", "test"}
    refused(
        {**entry, "cross_split_duplicates": "refuse"},
        in_tmp / "refused",
        r"Dataset_BUSI_with_GT: dataset 'd': \d set\(s\) of identical images fall in two splits.*"
        r"datasets\.d\.cross_split_duplicates: report",
    )


# COVID-CT ---------------------------------------------------------------------------------------


def test_covid_ct_reads_a_zip_or_a_folder_keeping_the_official_split(in_tmp):
    manifest = prepare(covid_ct(in_tmp / "COVID-CT"), in_tmp / "out")
    assert manifest["class_names"] == ["COVID", "NonCOVID"]
    assert manifest["split_origin"] == "official"
    assert manifest["sizes"] == {"train": 4, "val": 4, "test": 4}
    assert manifest["counts"]["test"] == {"COVID": 2, "NonCOVID": 2}
    assert "Images-processed/CT_COVID.zip" in manifest["source_files"]
    assert "Images-processed/CT_NonCOVID/1%0.jpg" in manifest["source_files"]
    unpacked = prepare(covid_ct(in_tmp / "unpacked", zipped=False), in_tmp / "out2")
    assert f"Images-processed/CT_COVID/{LONG}" in unpacked["source_files"]
    assert unpacked["sizes"] == manifest["sizes"]


def test_covid_ct_refusals(in_tmp):
    root = in_tmp / "COVID-CT"
    entry = covid_ct(root, zipped=False)
    lists = root / "Data-split" / "NonCOVID"
    (lists / "valCT_NonCOVID.txt").rename(in_tmp / "val.txt")
    refused(entry, in_tmp / "out", r"NonCOVID/valCT_NonCOVID\.txt: split list not found")
    (in_tmp / "val.txt").rename(lists / "valCT_NonCOVID.txt")
    with open(lists / "testCT_NonCOVID.txt", "a") as handle:
        handle.write("99%9.png\n")
    refused(entry, in_tmp / "out", r"testCT_NonCOVID\.txt:3: '99%9\.png' is not among")
    (lists / "testCT_NonCOVID.txt").write_text("20.jpg\n")
    refused(entry, in_tmp / "out", r"CT_NonCOVID/21\.png: in none of the split lists")
    (lists / "testCT_NonCOVID.txt").write_text("20.jpg\n21.png\n12.png\n")
    refused(entry, in_tmp / "out", r"testCT_NonCOVID\.txt:3: '12\.png' is already in another")


# Chaoyang ---------------------------------------------------------------------------------------


def test_chaoyang_keeps_each_pathologists_label_and_carves_val_from_train(in_tmp):
    manifest = prepare(chaoyang(in_tmp / "chaoyang-data"), in_tmp / "out")
    assert manifest["class_names"] == ["normal", "serrated", "adenocarcinoma", "adenoma"]
    assert manifest["sizes"] == {"train": 8, "val": 4, "test": 4}
    assert "val drawn from train" in manifest["split_origin"]
    assert set(manifest["annotations"]) == {"label_A", "label_B"}
    data = PreparedDataset.load(in_tmp / "out")
    assert manifest["annotations"]["label_A"] == data.labels.tolist()
    assert manifest["annotations"]["label_B"][:4] == [0, 2, 0, 2]


def test_chaoyang_refusals(in_tmp):
    root = in_tmp / "chaoyang-data"
    entry = chaoyang(root)
    image(root / "train" / "999-IMG.JPG", "JPEG")
    refused(entry, in_tmp / "out", r"train/999-IMG\.JPG: image without a label in \S+train\.json")
    (root / "train" / "999-IMG.JPG").unlink()
    records = json.loads((root / "test.json").read_text())
    (root / records[1]["name"]).unlink()
    refused(entry, in_tmp / "out", r"test\.json: record 1: file 'test/\S+\.JPG' not found")
    image(root / records[1]["name"], "JPEG")
    records[2]["label"] = 7
    (root / "test.json").write_text(json.dumps(records))
    refused(entry, in_tmp / "out", r"test\.json: record 2: 'label' is 7, not 0\.\.3")


# ISIC 2018, Kvasir, APTOS 2019 ------------------------------------------------------------------


def test_isic2018_official_parts_and_a_test_drawn_where_absent(in_tmp):
    manifest = prepare(isic2018(in_tmp / "isic"), in_tmp / "out")
    assert manifest["class_names"] == list(ISIC)
    assert manifest["sizes"] == {"train": 21, "val": 7, "test": 7}
    assert "test drawn from train" in manifest["split_origin"]
    assert not any(name.endswith(".txt") for name in manifest["source_files"])


def test_isic2018_refusals(in_tmp):
    root = in_tmp / "isic"
    entry = isic2018(root)
    truth = (
        root / "ISIC2018_Task3_Validation_GroundTruth" / "ISIC2018_Task3_Validation_GroundTruth.csv"
    )
    text = truth.read_text()
    truth.write_text(text.replace("1.0", "0.0", 1))
    refused(
        entry, in_tmp / "out", r"Validation_GroundTruth\.csv:2: needs exactly one class at 1\.0"
    )
    truth.write_text(text + "ISIC_0099999,1.0,0.0,0.0,0.0,0.0,0.0,0.0\n")
    refused(entry, in_tmp / "out", r"label of 'ISIC_0099999' without its image")
    truth.unlink()
    refused(entry, in_tmp / "out", r"Validation ground-truth file not found")


def test_kvasir_eight_classes_split_drawn(in_tmp):
    root = in_tmp / "kvasir-dataset-v2"
    entry = kvasir(root)
    manifest = prepare(entry, in_tmp / "o")
    assert manifest["class_names"] == list(KVASIR)
    assert manifest["sizes"] == {"train": 16, "val": 8, "test": 8}
    (root / "polyps" / "extra").mkdir()
    refused(
        {"source": "kvasir", "root": str(root)}, in_tmp / "x", r"polyps/extra: unexpected entry"
    )
    (root / "polyps" / "extra").rmdir()
    (root / "esophagitis").rename(in_tmp / "moved")
    refused({"source": "kvasir", "root": str(root)}, in_tmp / "x", r"esophagitis: class folder not")


def test_aptos2019_reads_train_only_and_draws_every_split(in_tmp):
    root = in_tmp / "aptos"
    entry = aptos2019(root)
    manifest = prepare(entry, in_tmp / "out")
    assert manifest["class_names"][0] == "no DR" and len(manifest["class_names"]) == 5
    assert manifest["sizes"] == {"train": 10, "val": 5, "test": 5}
    assert not any(name.startswith("test") for name in manifest["source_files"])
    with open(root / "train.csv", "a") as handle:
        handle.write("ffff,5\n")
    refused(entry, in_tmp / "x", r"train\.csv:22: diagnosis '5' is not a grade 0\.\.4")


def test_isic2018_keeps_each_lesion_in_one_drawn_split(in_tmp):
    root = in_tmp / "isic"
    entry = isic2018(root, parts=("Training",), per_class=10)
    truth = root / "ISIC2018_Task3_Training_GroundTruth"
    images = sorted(p.stem for p in (root / "ISIC2018_Task3_Training_Input").glob("*.jpg"))
    lesion = {0: "HAM_0", 1: "HAM_0", 10: "HAM_1", 11: "HAM_1"}  # two lesions of two images
    rows = [f"{image},{lesion.get(i, f'HAM_{i + 9}')},histo" for i, image in enumerate(images)]
    (truth / "ISIC2018_Task3_Training_LesionGroupings.csv").write_text(
        "image,lesion_id,diagnosis_confirm_type\n" + "\n".join(rows) + "\n"
    )
    manifest = prepare({**entry, "val_fraction": 0.25, "test_fraction": 0.25}, in_tmp / "out")
    assert manifest["grouping"] == "lesion_id of ISIC2018_Task3_Training_LesionGroupings.csv"
    assert sum(manifest["groups_per_split"].values()) == 68  # 70 images, 2 lesions of 2
    split = PreparedDataset.load(in_tmp / "out").split
    assert split[0] == split[1] and split[10] == split[11]
    truth_csv = truth / "ISIC2018_Task3_Training_GroundTruth.csv"
    with open(truth_csv, "a") as handle:
        handle.write(f"{images[0]},0.0,1.0,0.0,0.0,0.0,0.0,0.0\n")
    refused(entry, in_tmp / "x", rf"GroundTruth\.csv:72: '{images[0]}' is listed twice")


def test_a_damaged_image_inside_a_zip_names_the_member(in_tmp):
    root = in_tmp / "COVID-CT"
    entry = covid_ct(root)
    archive = root / "Images-processed" / "CT_COVID.zip"
    with zipfile.ZipFile(archive) as handle:
        member = handle.infolist()[0]
    data = bytearray(archive.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data[start + 40 : start + 60] = bytes(20)  # inside the member's stored bytes: CRC mismatch
    archive.write_bytes(bytes(data))
    refused(entry, in_tmp / "out", rf"CT_COVID\.zip:{re.escape(member.filename)}: ")


def test_covid_ct_split_lists_are_hashed_and_a_pattern_fits_both_layouts(in_tmp):
    pattern = {"group_pattern": r"^Images-processed/CT_\w+/(.+)\."}  # each image its own
    zipped = prepare({**covid_ct(in_tmp / "a"), **pattern}, in_tmp / "out")
    unpacked = prepare({**covid_ct(in_tmp / "b", zipped=False), **pattern}, in_tmp / "out2")
    assert "Data-split/COVID/trainCT_COVID.txt" in zipped["source_files"]
    assert zipped["groups_per_split"] == unpacked["groups_per_split"]


def test_chaoyang_refuses_a_label_that_is_not_an_integer(in_tmp):
    root = in_tmp / "chaoyang-data"
    entry = chaoyang(root)
    records = json.loads((root / "train.json").read_text())
    records[0]["label"] = True
    (root / "train.json").write_text(json.dumps(records))
    refused(entry, in_tmp / "out", r"train\.json: record 0: 'label' is True, not 0\.\.3")
