"""Markdown model card written next to an exported model, from the model file's own JSON card.

Every figure in it comes from the card that export wrote (scores, steps, time, zero fractions), so the Markdown
can never disagree with the model file it describes.
"""
from __future__ import annotations

from pathlib import Path

from ..arch import LAYERS, MASK_DELTA
from .data import COMPOSITE_FLAGS


def card_markdown(card: dict) -> str:
    arch, train = card["architecture"], card.get("training", {})
    recipe = train.get("recipe", {})
    t = recipe.get("train", {})
    scores = card.get("scores", {})
    masked = [n for n in LAYERS if arch.get("layer_kinds", {}).get(n) == "masked"]
    h, w = arch["input_size"]
    kind = card.get("kind", "?")
    if not arch["quantized"]:
        layers = "full precision (ReLU, float weights)"
    elif masked:
        layers = f"binary activations; masked (-1/0/+1) layers: {', '.join(masked)}; the others binary (+-1)"
    else:
        layers = f"binary activations; all {len(LAYERS)} configurable layers binary (+-1), none masked"
    lines = [
        f"# {card.get('name', '?')}",
        "",
        f"- kind: **{kind}**; U-Net width {arch['width']}, input {w}x{h} (WxH), {arch['classes']} class(es)",
        f"- layers: {layers}",
        f"- validation ({scores.get('val_images', '?')} images): Dice **{scores.get('val_dice', float('nan')):.4f}**, "
        f"IoU {scores.get('val_iou', float('nan')):.4f}, pixel F1 {scores.get('val_f1', float('nan')):.4f}"
        + (" (the exported function at quant mix 1, scored in PyTorch; the bit engines compute the same "
           "function up to BatchNorm ties)" if arch["quantized"] else " (scored in PyTorch at export)"),
        f"- training: exported at step {train.get('steps', '?')} of {t.get('steps', '?')}, batch {t.get('batch', '?')}"
        + (f" (random {t['crop'][1]}x{t['crop'][0]} crops)" if t.get("crop") else "")
        + f", {t.get('optimizer', '?')} lr {t.get('lr', '?')} ({t.get('lr_schedule', '?')}), grad clip "
        f"{t.get('grad_clip', '?')}, BCE + Dice"
        + ("; BatchNorm statistics frozen" if t.get("bn_statistics") == "frozen" else "")
        + f"; {train.get('seconds', '?')} s on {train.get('device', '?')}",
    ]
    if t.get("init"):
        source = dict(train.get("init_digest", {}))
        rebuilt = source.pop("rebuilt_from", None)
        digest = "".join(f"; its {key} {value}" for key, value in source.items())
        how = (f"a quantized model file (kind {rebuilt}), rebuilt as trainable weights with its function"
               if rebuilt else "trained weights, copied where the networks share them")
        lines.append(f"- initialised from `{t['init']}` ({how}{digest}), not from random weights")
    if t.get("teacher"):
        lines.append(f"- distilled from `{t['teacher']}`: the loss adds {t.get('distill_weight', 1.0)} x the "
                     "cross-entropy to that full-precision model's soft output")
    stages = complete_stages(train.get("stages") or [], t)
    settings = stages or complete_stages([{}], t)  # a card without stages: the recipe's own settings
    if arch["quantized"]:
        grads = {stage["activation_grad"] for stage in settings}
        grad = grads.pop() if len(grads) == 1 else "by stage (below)"
        lines.append(f"- schedule: FP warm-up {t.get('warmup', '?')} of the steps, then quant mix 0 -> 1 "
                     f"({t.get('ramp_shape', '?')}) over {t.get('ramp', '?')}, then fully binary; activation "
                     f"gradient {grad}")
    zeros = train.get("zero_fractions") or {}
    if zeros:
        delta = recipe.get("model", {}).get("mask_delta", MASK_DELTA)
        lines.append(f"- zero weights per masked layer (|w| <= {delta} mean|w|): "
                     + ", ".join(f"{k} {v:.0%}" for k, v in zeros.items()))
    if len(stages) > 1:
        lines.append("- stages (resuming with a longer --steps re-spreads the schedule): "
                     + "; ".join(_stage_text(stage) for stage in stages))
    lines += ["", f"Data: {train.get('data', 'not recorded')}", "", _reproduce(card, t, settings)]
    return "\n".join(lines) + "\n"


# What a stage records besides its steps and time, and the value an older record implies: no teacher and the
# clipped identity (records before 2026-12-05), composites (records before the data flags, 2026-12-05: every model
# trained until then was).
STAGE_DEFAULTS = {"teacher": "", "activation_grad": "ste", "data_flags": COMPOSITE_FLAGS}
#: a resumed run starts a new stage where one of these differs from its last stage
STAGE_SETTINGS = ("steps", *STAGE_DEFAULTS)
#: the first command's recipe file where the first stage does not record it (older records)
RECIPE_PLACEHOLDER = "<fp|mbunet|binary>"


def complete_stages(stages: list[dict], train_recipe: dict) -> list[dict]:
    """The stages with every setting filled in. Older records lack the teacher and the activation gradient; only
    the last stage, whose recipe is stored beside them, can have differed from the defaults."""
    last = len(stages) - 1
    return [{**{key: train_recipe.get(key, default) if i == last else default
                for key, default in STAGE_DEFAULTS.items()}, **stage} for i, stage in enumerate(stages)]


def _stage_text(stage: dict) -> str:
    planned = f"of a {stage['steps']}-step schedule" if stage.get("steps") else "(schedule not recorded)"
    taught = f", distilled from {stage['teacher']}" if stage["teacher"] else ""
    grad = stage["activation_grad"]
    surrogate = f", activation gradient {grad}" if grad != "ste" else ""
    return f"steps {stage['start']}-{stage['end']} {planned}{taught}{surrogate}, {stage.get('seconds', '?')} s"


def _reproduce(card: dict, t: dict, settings: list[dict]) -> str:
    """The command(s) that trained this model: one `train`, then one `train --resume` per later stage. The first
    names the learning rate and the width, which a run may have set with --lr or --width instead of its recipe file."""
    name = card.get("name", "model")
    final = card.get("training", {}).get("selection") == "final"
    # The best-validated export can come from any stage, so every command names it; the end of the schedule is
    # written by the last command alone.
    # into the working folder, never weights/: following a shipped model's card must not replace that model
    export = f" --export{'-final' if final else ''} {name}.safetensors"
    last = len(settings) - 1
    first = settings[0].get("steps") or t.get("steps") or "N"
    # The first command names a quantized model's gradient (a recipe file may set either); a resume keeps the
    # checkpoint's, so a later command names it only where it changed.
    previous = None if card["architecture"]["quantized"] else settings[0]["activation_grad"]
    commands = []
    for i, stage in enumerate(settings):
        grad = stage["activation_grad"]
        if i == 0:
            command = (f"mbunet train --config {stage.get('recipe_file') or RECIPE_PLACEHOLDER} "
                       f"{stage['data_flags']} --steps {first} --lr {t.get('lr', '?')} "
                       f"--width {card['architecture']['width']}"
                       + (f" --init {t['init']}" if t.get("init") else ""))
        else:
            command = (f"mbunet train --resume runs/train/{name}/last.pt {stage['data_flags']} "
                       f"--steps {stage['steps']}")
        command += ((f" --teacher {stage['teacher']}" if stage["teacher"] else "")
                    + (f" --activation-grad {grad}" if grad != previous else "")
                    + (export if i == last or not final else ""))
        commands.append(f"`{command}`" + _stopped_early(stage))
        previous = grad
    return ("Reproduce: " + ", then ".join(commands)
            + "; the full recipe is stored in the model file's card (training.recipe).")


STOP_REASONS = {"minutes": ", with --minutes", "signal": ", by a signal (Ctrl-C or SIGTERM)"}


def _stopped_early(stage: dict) -> str:
    """A stage that ended before its schedule did: say where, and why where recorded (records from before
    2026-12-05 do not say whether --minutes or a signal ended it)."""
    end, steps = stage.get("end"), stage.get("steps")
    reason = STOP_REASONS.get(stage.get("stopped"), "")
    return f" (stopped at step {end}{reason})" if end and steps and end < steps else ""


def run_history(stages: list[dict], init_digest: dict[str, str]) -> dict:
    """How a run got here, as a card's `training` stores it (stages in whole seconds, and the digest of the
    weights it started from, where recorded): the trainer's exports and `mbunet export` alike."""
    history = {"stages": [{**stage, "seconds": round(stage["seconds"])} for stage in stages]}
    if init_digest:
        history["init_digest"] = init_digest
    return history


def write_card(model_path: str | Path, card: dict) -> Path:
    """model.safetensors -> model.md beside it."""
    path = Path(model_path).with_suffix(".md")
    path.write_text(card_markdown(card))
    return path
