"""SALMONN (bytedance/SALMONN, ``salmonn_v1.pth``) natively: Whisper + BEATs + window-level Q-Former + Vicuna/LoRA.

Modules: :mod:`.fbank` (BEATs' Kaldi fbank), :mod:`.beats` (the BEATs encoder),
:mod:`.model` (the assembled ``SalmonnModel``), :mod:`.loader` (the official files, key
mapping, strict loading) and :mod:`.backend` (the ``salmonn`` backend of ``bin/infer``).
Importing this package imports no torch.
"""
