"""Lab 7's training recipe and the menu of presets: the numbers the workbook fixes.

Kept apart from model.py so the CLI can show them in `--help` without importing
TensorFlow (seconds); model.py builds each preset's layers, this names them.
"""

from __future__ import annotations

LAB_SEED = 7
LAB_EPOCHS = 12
LAB_BATCH_SIZE = 128
LAB_LEARNING_RATE = 1e-3  # Keras's Adam default, which the lab uses

# name -> what it is for. Lab 7's text says the second convolution is 5x5, its code
# says (2, 2): `lab7` follows the code (the workbook's numbers came from it).
PRESETS: dict[str, str] = {
    "lab7": "Lab 7 as coded: second conv 2x2",
    "lab7-5x5": "Lab 7 as written: second conv 5x5",
    "robust": "for drawings: augmentation, batch norm, 3x3 convs, LR schedule",
    "quick": "99 % in one epoch: small CNN, batch norm, one-cycle LR (seconds)",
}
DEFAULT_PRESET = "lab7"

# The Train page's "Quick demo": the `quick` preset's own recipe, one pass over the
# 60,000 images. Its learning rate is the peak of a warm-up + cosine cycle over that
# epoch (a constant 0.01 would bounce around); chosen on held-out training digits.
QUICK_EPOCHS = 1
QUICK_BATCH_SIZE = 128
QUICK_LEARNING_RATE = 0.01
