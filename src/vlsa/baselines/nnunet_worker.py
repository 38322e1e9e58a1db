"""nnU-Net v2's own pipeline for one unit, run in a child process whose environment names the unit's
nnUNet_raw / nnUNet_preprocessed / nnUNet_results (nnU-Net reads them once, at import).

    python -m vlsa.baselines.nnunet_worker --dataset-id 500 --inputs DIR... --outputs DIR... \
        --epochs E --iterations I --batch B --seed S --threads T

Steps, each skipped when its output exists (resumable): fingerprint + plan + preprocess (2d
configuration; the plans' batch size set to B), training of fold 0 (the `--splits` file's first train/val split) with `nnUNetTrainerBudget`
(nnU-Net's trainer, E epochs x I iterations instead of 1000 x 250; the final cross-validation
inference is skipped: the unseen domains are scored by vlsa), then prediction of every image in
each `--inputs` folder (imagesTr/<case>_XXXX<ending>) into the matching `--outputs` folder with
nnU-Net's predictor (sliding window, Gaussian weighting, mirroring TTA as nnU-Net defaults).
Only vlsa.baselines.nnunet_row starts this; it needs `pip install 'vlsa[nnunet]'`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

CONFIGURATION = "2d"
CPU = torch.device("cpu")
FOLD = 0


class nnUNetTrainerBudget(nnUNetTrainer):  # noqa: N801 (nnU-Net's naming)
    """nnUNetTrainer with a short schedule (class attributes set by `main` before construction)."""

    EPOCHS = 10
    ITERATIONS = 50
    VAL_ITERATIONS = 5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = CPU):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.EPOCHS
        self.num_iterations_per_epoch = self.ITERATIONS
        self.num_val_iterations_per_epoch = self.VAL_ITERATIONS
        self.save_every = 1  # an epoch is minutes on CPU: an interrupted training loses at most one

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("final validation skipped: vlsa scores the unseen domains itself")


def plan_and_preprocess(dataset_id: int, batch: int, processes: int, splits: Path | None = None) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    name = convert_id_to_dataset_name(dataset_id)
    plans_file = Path(nnUNet_preprocessed) / name / "nnUNetPlans.json"
    done = Path(nnUNet_preprocessed) / name / ".vlsa-preprocessed"
    if done.is_file():
        return
    os.environ["nnUNet_n_proc_DA"] = str(processes)  # the planner sets torch's threads to this (0 fails)
    extract_fingerprints([dataset_id], num_processes=processes, check_dataset_integrity=True)
    plan_experiments([dataset_id])
    import json

    plans = json.loads(plans_file.read_text())
    plans["configurations"][CONFIGURATION]["batch_size"] = batch  # the row's budget, like every other row's
    plans_file.write_text(json.dumps(plans, indent=2))
    preprocess([dataset_id], configurations=[CONFIGURATION], num_processes=[processes])
    os.environ["nnUNet_n_proc_DA"] = "0"  # training: augmentation in this process, no workers
    if splits is not None:  # nnU-Net uses a splits_final.json it finds instead of its own 5-fold split
        shutil.copyfile(splits, Path(nnUNet_preprocessed) / name / "splits_final.json")
    done.write_text("ok\n")


def load_trainer(dataset_id: int) -> nnUNetTrainerBudget:
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    base = Path(nnUNet_preprocessed) / convert_id_to_dataset_name(dataset_id)
    plans = load_json(str(base / "nnUNetPlans.json"))
    plans["continue_training"] = False
    dataset_json = load_json(str(base / "dataset.json"))
    return nnUNetTrainerBudget(plans=plans, configuration=CONFIGURATION, fold=FOLD, dataset_json=dataset_json,
                               device=torch.device("cpu"))


def train(dataset_id: int) -> Path:
    """Train fold 0 (or resume from checkpoint_latest.pth); -> checkpoint_final.pth."""
    trainer = load_trainer(dataset_id)
    final = Path(trainer.output_folder) / "checkpoint_final.pth"
    if final.is_file():
        return final
    latest = Path(trainer.output_folder) / "checkpoint_latest.pth"
    if latest.is_file():
        trainer.load_checkpoint(str(latest))
    trainer.run_training()
    return final


def predict(dataset_id: int, checkpoint: Path, inputs: list[Path], outputs: list[Path], threads: int) -> None:
    """nnU-Net's predictor on every case of each input folder -> <output>/<case><ending>."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer = load_trainer(dataset_id)
    trainer.initialize()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, allow_tqdm=False)
    trainer.set_deep_supervision_enabled(False)  # inference: the full-resolution output only
    network = trainer.network
    network.load_state_dict(state["network_weights"])
    predictor.manual_initialization(network, trainer.plans_manager, trainer.configuration_manager,
                                    [state["network_weights"]], trainer.dataset_json, type(trainer).__name__,
                                    state["inference_allowed_mirroring_axes"])
    ending = trainer.dataset_json["file_ending"]
    reader_writer = trainer.plans_manager.image_reader_writer_class()
    channels = len(trainer.dataset_json["channel_names"])
    for folder, out in zip(inputs, outputs):
        out.mkdir(parents=True, exist_ok=True)
        files = sorted((folder / "imagesTr").glob(f"*_0000{ending}"))
        for first in files:
            case = first.name[: -len(f"_0000{ending}")]
            target = out / f"{case}{ending}"
            if target.is_file():
                continue
            names = [folder / "imagesTr" / f"{case}_{c:04d}{ending}" for c in range(channels)]
            names = [str(p) for p in names if p.is_file()]  # an RGB PNG holds 3 channels in _0000
            image, props = reader_writer.read_images(names)
            tmp = out / f".{case}.partial"
            predictor.predict_single_npy_array(image, props, None, str(tmp), False)
            os.replace(f"{tmp}{ending}", target)
        torch.set_num_threads(threads)  # nnU-Net's predictor resets it


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset-id", type=int, required=True)
    parser.add_argument("--inputs", nargs="*", default=[])
    parser.add_argument("--outputs", nargs="*", default=[])
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--val-iterations", type=int, default=5)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--splits", default=None, help="splits_final.json to use (fold 0 = the first entry)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    nnUNetTrainerBudget.EPOCHS, nnUNetTrainerBudget.ITERATIONS = args.epochs, args.iterations
    nnUNetTrainerBudget.VAL_ITERATIONS = args.val_iterations
    plan_and_preprocess(args.dataset_id, args.batch, processes=args.threads,
                        splits=Path(args.splits) if args.splits else None)
    checkpoint = train(args.dataset_id)
    predict(args.dataset_id, checkpoint, [Path(p) for p in args.inputs], [Path(p) for p in args.outputs], args.threads)


if __name__ == "__main__":
    main()
