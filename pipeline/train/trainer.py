"""The training loop: progressive binarisation, Adam/RMSprop, BCE + Dice (plus distillation from an FP teacher when
the recipe names one), gradient clipping, LR schedule, resumable checkpoints, periodic validation on the fixed set,
and export of the best fully quantized model.

Batch `b` of step `s` is samples s*b .. s*b+b-1 of the seeded stream, so a resumed run continues with exactly
the samples (and, on CPU, exactly the weights) an uninterrupted run would have had.
A model is exported only while the quant mix is 1 (or for FP models), i.e. when the validated function is the
one the engines compute; the card's scores are those of that function on the full validation set.
"""
from __future__ import annotations

import copy
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, MbunetError
from ..export import export_model
from ..modelfile import read_card
from ..nn import UNet, set_activation_grad, set_quant_mix, zero_fractions
from ..signals import StopOnSignals
from .card import STAGE_SETTINGS, complete_stages, run_history, write_card
from .composite import draw_batch
from .batches import random_crop, to_input
from .checkpoint import CHECKPOINT, read_checkpoint
from .config import TrainConfig, config_from_dict
from .data import TrainData
from .distill import load_teacher
from .losses import distillation_loss, segmentation_loss
from .metrics import Scores, ScoreSet
from .schedule import learning_rate, quant_mix

def pick_device(name: str) -> torch.device:
    """"auto" = CUDA when present; asking for CUDA without one is an error, never a silent CPU run."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MbunetError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU")
    if not (name == "cpu" or name.startswith("cuda")):
        raise MbunetError(f"--device {name!r}; valid: auto, cpu, cuda, cuda:N")
    return torch.device(name)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch: int = 16) -> np.ndarray:
    """Class masks uint8 [N, H, W]: logit >= 0 for one class (the engines' rule), else argmax."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        logits = model(to_input(images[i:i + batch], device))
        m = logits[:, 0] >= 0 if logits.shape[1] == 1 else logits.argmax(dim=1)
        out.append(m.to(torch.uint8).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


def score(model: torch.nn.Module, images: np.ndarray, masks: np.ndarray, device: torch.device) -> Scores:
    s = ScoreSet()
    s.add(predict(model, images, device), masks)
    return s.result()


# A quantized --init file's BatchNorm statistics come from this many training samples, drawn with their own seed.
CALIBRATION_IMAGES = 64
CALIBRATION_SEED = 7919


class Trainer:
    def __init__(self, cfg: TrainConfig, data: TrainData, device: torch.device, out_dir: str | Path,
                 recipe_file: str = "") -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.arch = cfg.model.architecture()
        torch.manual_seed(cfg.train.seed)
        self.model = UNet(self.arch, cfg.model.mask_delta).to(device)
        t = cfg.train
        set_activation_grad(self.model, t.activation_grad)
        opt = torch.optim.Adam if t.optimizer == "adam" else torch.optim.RMSprop
        self.opt = opt(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.phases = t.phases()
        self.teacher = load_teacher(t.teacher, self.arch.classes, device) if t.teacher else None
        self.step = 0
        self.best = -1.0          # best validation Dice of an exportable (mix = 1) model
        self.exported_step: int | None = None   # step of this session's latest export, if any
        self.stopped_by_signal = False          # fit() ended by Ctrl-C/SIGTERM (with a checkpoint)
        # One entry per schedule the run followed: {"start", "end", "steps", "teacher", "activation_grad",
        # "data_flags", "seconds"}, "recipe_file" in the first where the run began from one, and "stopped"
        # ("minutes" or "signal") while it ends before its schedule does. Resuming with another --steps re-spreads
        # the schedule's phases, so the card must say where each schedule began and ended, and what it trained
        # with and on.
        self.stages: list[dict] = []
        self.recipe_file = recipe_file  # the --config file a new run starts from, for the reproduce line
        # the digest of the weights train.init copied (and, for a quantized file, "rebuilt_from": its kind), for
        # the card
        self.init_digest: dict[str, str] = {}
        self.last_val: Scores | None = None

    @property
    def seconds(self) -> float:
        """Training time over all sessions of this run."""
        return sum(stage["seconds"] for stage in self.stages)

    def warm_start(self) -> dict:
        """Weights from cfg.train.init (an FP model file, a checkpoint, or a quantized model file to fine-tune)
        instead of random ones."""
        from .warmstart import warm_start

        started = warm_start(self.model, self.cfg.train.init, self._calibration)
        self.init_digest = started["digest"]
        return started

    def _calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """Training samples (whole images, not crops) that measure a quantized --init file's BatchNorm inputs.
        Its network is already binarised: a schedule that starts in full precision would discard it."""
        if self.mix() < 1.0:
            raise ConfigError(f"--init {self.cfg.train.init}: a quantized model file starts fully binarised, but "
                              f"this recipe begins with an FP warm-up or a ramp; fine-tune with train.warmup 0 and "
                              f"train.ramp 0 (configs/train/finetune-mbunet.yaml)")
        return draw_batch(self.data.train, CALIBRATION_SEED, 0, CALIBRATION_IMAGES)

    # -- checkpoints -------------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path or self.out / CHECKPOINT)
        state = {"config": self.cfg.to_json(), "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "step": self.step, "best": self.best, "seconds": self.seconds, "stages": self.stages,
                 "init_digest": self.init_digest, "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # never a half-written checkpoint under the real name
        return path

    def load(self, path: str | Path) -> None:
        state = read_checkpoint(path)
        stored = config_from_dict(state["config"], f"{path} (stored recipe)").model  # older recipes: defaults
        if stored != self.cfg.model:
            raise ConfigError(f"{path}: checkpoint of another model than the recipe's ({stored} vs {self.cfg.model})")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.best = int(state["step"]), float(state["best"])
        # checkpoints from before stages were recorded: one stage of unknown schedule length
        recorded = state.get("stages") or ([{"start": 0, "end": self.step, "steps": None,
                                             "seconds": float(state["seconds"])}] if self.step else [])
        self.stages = complete_stages(recorded, state["config"].get("train", {}))
        self.init_digest = state.get("init_digest", {})  # checkpoints from before 2026-12-05 recorded none
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    # -- one step ----------------------------------------------------------------------------------------
    def mix(self) -> float:
        return quant_mix(self.step, self.phases) if self.arch.quantized else 1.0

    def begin_stage(self) -> None:
        """A new stage when the schedule's length, the teacher, the activation gradient or the data flags changed; a
        plain resume after an interruption continues the current one, and so does a resume with nothing left to
        train."""
        t = self.cfg.train
        setting = {"steps": t.steps, "teacher": t.teacher, "activation_grad": t.activation_grad,
                   "data_flags": self.data.flags}
        last = self.stages[-1] if self.stages else None
        if last is None and self.recipe_file:
            setting["recipe_file"] = self.recipe_file
        changed = last is not None and any(last[key] != setting[key] for key in STAGE_SETTINGS)
        if last is None or (changed and self.step < t.steps):
            self.stages.append({"start": self.step, "end": self.step, **setting, "seconds": 0.0})

    def train_step(self) -> float:
        t = self.cfg.train
        for g in self.opt.param_groups:
            g["lr"] = learning_rate(self.step, self.phases, t.lr, t.lr_schedule)
        set_quant_mix(self.model, self.mix())
        if t.bn_statistics == "frozen":  # every step: validation hands the model back in training mode
            for m in self.model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        images, masks = draw_batch(self.data.train, t.seed, self.step * t.batch, t.batch)
        if t.crop:
            images, masks = random_crop(images, masks, t.crop, np.random.default_rng([t.seed, self.step]))
        x = to_input(images, self.device)
        logits = self.model(x)
        loss = segmentation_loss(logits, torch.from_numpy(masks).long().to(self.device), t.dice_weight)
        if self.teacher is not None:
            with torch.no_grad():
                soft = self.teacher(x)
            loss = loss + t.distill_weight * distillation_loss(logits, soft)
        if not torch.isfinite(loss):
            raise MbunetError(f"step {self.step}: loss is {loss.item()} (diverged); lower train.lr and resume "
                              f"from the last checkpoint")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        self.step += 1
        return float(loss.item())

    # -- validation and export ---------------------------------------------------------------------------
    def validate(self) -> Scores:
        set_quant_mix(self.model, self.mix())
        self.last_val = score(self.model, self.data.val_images, self.data.val_masks, self.device)
        return self.last_val

    def export(self, path: str | Path, scores: Scores, selection: str = "best") -> Path:
        """The model as it stands, with its card. `selection` says how this step was chosen: "best" (the best
        validation so far, --export) or "final" (the end of the schedule, --export-final)."""
        model = copy.deepcopy(self.model).cpu()  # export reads numpy arrays; keep the training copy as it is
        set_quant_mix(model, 1.0)
        card = {"name": self.cfg.name, "scores": {"val_dice": scores.dice, "val_iou": scores.iou,
                                                  "val_f1": scores.f1, "val_images": scores.images},
                "training": {"data": self.data.description, "recipe": self.cfg.to_json(), "steps": self.step,
                             "seconds": round(self.seconds), "device": str(self.device), "selection": selection,
                             **run_history(self.stages, self.init_digest)}}
        if self.arch.quantized:
            card["training"]["zero_fractions"] = zero_fractions(model)
        path = Path(export_model(model, self.arch, card, path))
        write_card(path, read_card(path))  # the Markdown card beside it, from what was written
        return path

    # -- the loop ----------------------------------------------------------------------------------------
    def fit(self, export: str | Path | None = None, minutes: float | None = None,
            progress: bool = True, export_final: str | Path | None = None) -> Scores | None:
        """Train up to cfg.train.steps (or `minutes` of wall time, or until Ctrl-C/SIGTERM), then checkpoint;
        returns the last validation scores (None if no validation ran in this session). `stopped_by_signal` tells
        whether a signal ended it (any number of signals: the step under way finishes and the checkpoint is written)."""
        from tqdm import tqdm

        t = self.cfg.train
        # disable=None: no bar when stderr is not a terminal (a log file would fill with redrawn bars)
        bar = tqdm(total=t.steps, initial=self.step, desc=self.cfg.name, disable=None if progress else True,
                   dynamic_ncols=True)
        self.begin_stage()
        stop = threading.Event()
        with StopOnSignals(stop):
            self._loop(export, minutes, bar, stop)
        self.stopped_by_signal = stop.is_set()
        self._record_stop()
        self.save()
        bar.close()
        if export_final and self.finished():
            self.export(export_final, self.last_val or self.validate(), selection="final")
        return self.last_val

    def _record_stop(self) -> None:
        """Why this session ended before the schedule did, for the card's reproduce line; a later session of the
        same stage that reaches the end clears it."""
        stage = self.stages[-1]
        if self.step < self.cfg.train.steps:
            stage["stopped"] = "signal" if self.stopped_by_signal else "minutes"
        else:
            stage.pop("stopped", None)

    def exportable(self) -> bool:
        """The model computes what the engines will (quant mix 1; always so for a full-precision net)."""
        return self.mix() >= 1.0

    def finished(self) -> bool:
        """The schedule has reached its end with an exportable model: what --export-final writes."""
        return self.step >= self.cfg.train.steps and self.exportable()

    def _loop(self, export, minutes: float | None, bar, stop: threading.Event) -> None:
        t = self.cfg.train
        stage = self.stages[-1]
        start = saved = time.monotonic()
        ema = None
        while self.step < t.steps and not stop.is_set():
            t0 = time.monotonic()
            loss = self.train_step()
            stage["seconds"] += time.monotonic() - t0
            stage["end"] = self.step
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            if self.step % t.val_every == 0 or self.step == t.steps:
                self._validate_and_export(export, ema, bar)
                saved = time.monotonic()
            elif time.monotonic() - saved > t.checkpoint_minutes * 60:
                self.save()
                saved = time.monotonic()
            dice = f"{self.last_val.dice:.3f}" if self.last_val else "-"
            bar.set_postfix(loss=f"{ema:.3f}", mix=f"{self.mix():.2f}", val_dice=dice, refresh=False)
            bar.update(1)
            if minutes is not None and time.monotonic() - start > minutes * 60:
                break

    def _validate_and_export(self, export: str | Path | None, loss: float, bar) -> None:
        scores = self.validate()
        exportable = self.exportable()
        exported = bool(export) and exportable and scores.dice > self.best
        if exportable:
            self.best = max(self.best, scores.dice)
        if exported:
            self.export(export, scores)
            self.exported_step = self.step
        self.save()
        scored = {k: v if v is None else round(v, 5) for k, v in scores.to_json().items() if k != "images"}
        record = {"step": self.step, "loss": round(loss, 5), "mix": self.mix(), "seconds": round(self.seconds),
                  **scored, "exported": exported}
        with open(self.out / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        note = f" -> exported {export}" if exported else ""
        bar.write(f"[{self.cfg.name}] step {self.step}: loss {loss:.4f} mix {self.mix():.2f} val dice "
                  f"{scores.dice_text()} iou {scores.iou:.4f} f1 {scores.f1:.4f}{note}")
