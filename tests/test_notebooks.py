import json
import os

import pytest

from helpers import REPO

NOTEBOOKS = ["01_quickstart.ipynb", "02_custom_training_loop.ipynb", "03_inference.ipynb",
             "04_transfer_learning.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    nb = json.load(open(os.path.join(REPO, "notebooks", name)))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.slow
def test_notebooks_run_top_to_bottom(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # Small parameters; 03 reads the checkpoint 01 writes, so they share a work dir and run in order.
    monkeypatch.setenv("NB_TRAIN_IMAGES", "256")
    monkeypatch.setenv("NB_VAL_IMAGES", "200")
    monkeypatch.setenv("NB_EPOCHS", "1")
    monkeypatch.setenv("NB_BATCH_SIZE", "32")
    monkeypatch.setenv("NB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("NB_PRETRAIN_IMAGES", "1000")  # 04
    monkeypatch.setenv("NB_FOLDER_IMAGES", "30")
    monkeypatch.setenv("NB_FINETUNE_EPOCHS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in NOTEBOOKS:
        nb = nbformat.read(os.path.join(REPO, "notebooks", name), as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
        text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
        if name == "01_quickstart.ipynb":
            assert "validation top-1 after 1 epochs" in text
        if name == "03_inference.ipynb":
            assert "SymbolBlock agrees with the resnet_gluon model on 100% of a batch" in text
            assert "int8 top-1" in text and "largest logit difference from MXNet" in text
            assert "OpenVINO float32: largest logit difference from MXNet" in text
        if name == "04_transfer_learning.ipynb":
            assert "its classifier has 5 classes, the network 4: loaded all but the classifier" in text
            assert "fine-tuned top-1" in text and text.count(" -> ") == 8
