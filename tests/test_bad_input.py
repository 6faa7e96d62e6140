"""The bad-input table (issue 5): every CLI command, every bad value the issues list. Each one
must print exactly one line ``depthlab: error: ...`` on stderr, nothing on stdout, exit with
status 2 without a traceback, and leave the store byte-identical (and unopened: no -wal/-shm
files appear) and the output folders uncreated.

Cases are strings with placeholders filled in per test: {store} a real depthlab store holding
one run, {data} an empty data root (so a case that wrongly passed validation would fail on
"missing data", not train), {out} an output folder that must not appear, and bad files below.
To cover a new command, add its rows to CASES."""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fakedata import write_cifar_folder

from depthlab.cli import main
from depthlab.store.sqlite import Store

REPO = Path(__file__).resolve().parents[1]

T = "train cnn-tanh --depth 3 --epochs 1 --device cpu"
F = "frontier --models cnn-tanh --max-depth 6 --epochs 1 --lrs 0.1 --device cpu"
P = "phase --depths 6,12 --lrs 0.1 --sigma-w2 1,2 --epochs 1 --train-size 500 --device cpu"
PM = "phase --family mlp --width 16 --sigma-w2 1,2 --depths 2,4 --steps 3 --train-size 200 --device cpu"
R = "reproduce cifar-lr-bn --max-epochs 1 --train-size 16 --device cpu --checkpoint-dir {out}/ckpt"

STORE_CASES = [  # (store argument, message): bad stores, for every command that writes one
    ("{dir}", "is a directory"),
    ("{text}", "not a depthlab store"),
    ("{sqlite}", "not a depthlab store"),
    ("{nofolder}/s.db", "does not exist"),
]

CASES: list[tuple[str, str]] = [
    # train ------------------------------------------------------------------------------------
    ("train cnn-nope", "unknown model"),
    (
        "train cifar-cnn --epochs 1 --device cpu --train-size 100 --data-dir {cifar}",
        "more than the 40 training",
    ),
    (f"{T} --lr 0.1 --schedule 2@0.1,1@0.01", "--lr does not apply with the piecewise schedule"),
    (f"{T} --dataset imagenet", "unknown dataset"),
    ("train cifar-cnn --dataset mnist", "runs on cifar10"),
    ("train cnn-tanh --depth 10", "multiple of 3"),
    ("train cnn-tanh --depth 0", "multiple of 3"),
    ("train cnn-tanh --depth -3", "multiple of 3"),
    ("train cnn-tanh --depth x", "is not a valid integer"),
    (f"{T} --lr 0", "learning rate must be positive"),
    (f"{T} --lr -0.1", "learning rate must be positive"),
    (f"{T} --lr nan", "learning rate must be positive"),
    (f"{T} --lr inf", "learning rate must be positive"),
    ("train cnn-tanh --epochs 0", "epochs must be a positive integer"),
    ("train cnn-tanh --epochs -2", "epochs must be a positive integer"),
    (f"{T} --batch-size 0", "batch size must be a positive integer"),
    (f"{T} --batch-size -64", "batch size must be a positive integer"),
    (f"{T} --schedule ''", "malformed schedule"),
    (f"{T} --schedule 2@", "malformed schedule"),
    (f"{T} --schedule abc", "malformed schedule"),
    (f"{T} --schedule 2@0.1,x@0.01", "malformed schedule"),
    (f"{T} --schedule 2@0", "malformed schedule"),
    (f"{T} --schedule multistep:x", "malformed schedule"),
    (f"{T} --schedule multistep:3,2", "malformed schedule"),
    (f"{T} --schedule cosine+cosine", "malformed schedule"),
    (f"{T} --schedule warmup:-1+cosine", "malformed schedule"),
    (f"{T} --schedule hold:1+cosine", "malformed schedule"),
    (f"{T} --act swish", "unknown activation"),
    (f"{T} --norm ln", "unknown norm"),
    (f"{T} --skip dense", "unknown skip"),
    (f"{T} --init lecun", "unknown init"),
    (f"{T} --init normal:-1", "bad init"),
    (f"{T} --init normal:1e200", "too large"),
    (f"{T} --init scaled:1", "bad init"),
    (f"{T} --heads 2", "heads must be 1 or 3"),
    (f"{T} --width 0", "width multiplier"),
    (f"{T} --width -1", "width multiplier"),
    (f"{T} --width inf", "width multiplier"),
    (f"{T} --width nan", "width multiplier"),
    (f"{T} -p nokey", "expected KEY=VALUE"),
    (f"{T} -p =3", "expected KEY=VALUE"),
    (f"{T} -p bogus=1", "has no parameter 'bogus'"),
    ("train cnn-tanh -p depth=abc", "bad value 'abc' for depth"),
    (f"{T} --optimizer rmsprop", "unknown optimizer"),
    (f"{T} --momentum 1.5", "momentum must be in [0, 1)"),
    (f"{T} --momentum -0.1", "momentum must be in [0, 1)"),
    (f"{T} --weight-decay -1", "weight decay must be non-negative"),
    (f"{T} --train-size 0", "train size must be a positive integer"),
    (f"{T} --patience 0", "patience must be a positive integer"),
    ("train cnn-tanh --depth 3 --device tpu", "device"),
    (f"{T} --data-dir {{data}}", "missing data"),
    (f"{T} --data-dir {{corrupt}}", "checksum mismatch"),
    (f"{T} --data-dir {{badgz}}", "cannot read"),
    (f"{T} --out {{text}}", "exists and is not a folder"),
    (f"{T} --out {{text}}/sub", "is not a folder"),
    (f"{T} --tensorboard {{text}}", "tensorboard"),
    *[(f"{T} --store {s}", m) for s, m in STORE_CASES],
    # runs -------------------------------------------------------------------------------------
    ("runs --limit 0", "--limit must be positive"),
    ("runs --status bogus", "unknown status"),
    ("runs --tensorboard tb --snapshot copy.db", "two different commands"),
    ("runs --tensorboard tb --status interrupted", "by stored status"),
    ("runs --store {nofolder}/s.db", "does not exist"),
    ("runs --store {absent}", "does not exist"),
    *[(f"runs --store {s}", m) for s, m in STORE_CASES[:3]],
    ("runs --store {corrupt_record}", "corrupted record"),
    # info ---------------------------------------------------------------------------------------
    ("info --data-dir {text}", "is not a folder"),
    # summary / models -------------------------------------------------------------------------
    ("summary cnn-nope", "unknown model"),
    ("summary cnn-tanh --depth 10", "multiple of 3"),
    ("summary cnn-tanh --dataset imagenet", "unknown dataset"),
    ("summary cnn-tanh --act swish", "unknown activation"),
    ("summary cnn-tanh --width inf", "width multiplier"),
    ("summary cnn-tanh -p bogus=1", "has no parameter"),
    ("summary resnet-cifar -p n=0", "n >= 1"),
    ("models --bogus", "No such option"),
    # frontier ---------------------------------------------------------------------------------
    ("frontier --models cnn-nope", "unknown model"),
    ("frontier --models ''", "--models is empty"),
    ("frontier --models cnn-tanh,cifar-cnn", "no parameter 'depth'"),
    (f"{F} --act swish", "unknown activation"),
    (f"{F} --norm ln", "unknown norm"),
    (f"{F} --init lecun", "unknown init"),
    (f"{F} --width inf", "width multiplier"),
    (f"{F} -p bogus=1", "has no parameter"),
    (f"{F} --depths 3,10", "multiples of 3"),
    (f"{F} --depths 0", "multiples of 3"),
    (f"{F} --depths ''", "empty"),
    (f"{F} --depth 9", "No such option '--depth'. (Did you mean one of: '--depth-step', '--depths'"),
    ("frontier --lrs ''", "learning-rate grid is empty"),
    ("frontier --lrs ,", "learning-rate grid is empty"),
    ("frontier --lrs 0.1,-0.5", "must be positive"),
    ("frontier --lrs 0", "must be positive"),
    ("frontier --lrs nan", "must be positive"),
    ("frontier --lrs 0.1,abc", "bad learning rate"),
    ("frontier --lrs log:1:0.1:5", "bad --lrs"),
    ("frontier --lrs log:0.001:1:1", "bad --lrs"),
    ("frontier --lrs log:0.001:1:100000000", "COUNT <= 1000"),
    ("frontier --lrs lin:0.1:0.01:3", "bad --lrs"),
    ("frontier --lrs 0.1,0.1", "duplicates"),
    ("frontier --optimizers rmsprop", "unknown optimizer"),
    ("frontier --optimizers sgd,sgd", "duplicates"),
    ("frontier --optimizers ''", "non-empty"),
    ("frontier --optimizers sgd,adam --lrs 0.1", "name each grid"),
    ("frontier --lrs adam=0.001", "not among the optimizers"),
    ("frontier --lrs rmsprop=0.1", "unknown optimizer"),
    ("frontier --optimizers sgd,adam --lrs adam=log:1:0.1:3", "bad --lrs for adam"),
    ("frontier --optimizers sgd,adam --lrs adam=0", "must be positive"),
    ("frontier --lrs sgd=0.1 --lrs sgd=0.2", "twice"),
    ("frontier --lrs 0.1 --lrs 0.2", "each names its optimizer"),
    (f"{F} --threshold 0", "threshold must be in (0, 1)"),
    (f"{F} --threshold 1", "threshold must be in (0, 1)"),
    (f"{F} --threshold 1.5", "threshold must be in (0, 1)"),
    (f"{F} --threshold -0.2", "threshold must be in (0, 1)"),
    ("frontier --max-depth 2", "at least 3"),
    ("frontier --max-depth 0", "at least 3"),
    ("frontier --max-depth 10", "multiple of 3"),
    (f"{F} --seeds 0", "seeds"),
    (f"{F} --seeds x", "--seeds must be a positive integer or auto"),
    (f"{F} --seeds 1.5", "--seeds must be a positive integer or auto"),
    ("frontier --epochs 0", "epochs must be a positive integer"),
    (f"{F} --train-size 0", "train size"),
    (f"{F} --eval-size x", "--eval-size"),
    (f"{F} --eval-size 0", "--eval-size"),
    (f"{F} --evals-per-epoch 0", "evals per epoch"),
    (f"{F} --criterion val", "criterion"),
    (f"{F} --dataset imagenet", "unknown dataset"),
    (f"{F} --device tpu", "device"),
    (f"{F} --data-dir {{data}}", "missing data"),
    (f"{F} --data-dir {{corrupt}}", "checksum mismatch"),
    (f"{F} --out {{text}}", "exists and is not a folder"),
    *[(f"{F} --store {s}", m) for s, m in STORE_CASES],
    # theory -----------------------------------------------------------------------------------
    ("theory --act swish", "unknown activation"),
    ("theory --sigma-b2 -1", "--sigma-b2"),
    ("theory --sigma-b2 nan", "--sigma-b2"),
    ("theory --sigma-w2 ''", "bad --sigma-w2"),
    ("theory --sigma-w2 a,b", "bad --sigma-w2"),
    ("theory --sigma-w2 1:0:5", "bad --sigma-w2"),
    ("theory --sigma-w2 0,1", "bad --sigma-w2"),
    ("theory --sigma-w2 0.5:4:1000000000", "bad --sigma-w2"),
    ("theory --sigma-w2 lin:1:4", "bad --sigma-w2"),
    ("theory --sigma-w2 lin:4:1:13", "bad --sigma-w2"),
    ("theory --sigma-w2 log:0:1:5", "bad --sigma-w2"),
    ("theory --sigma-w2 log:1:4:x", "bad --sigma-w2"),
    ("theory --check-widths lin:0:2:3", "bad --check-widths"),
    ("theory --depth 0", "--depth must be positive"),
    ("theory --width 0", "--width must be positive"),
    ("theory --store {absent}", "does not exist"),
    ("theory --store {text}", "not a depthlab store"),
    ("theory --store {sqlite}", "not a depthlab store"),
    ("theory --measured {absent}", "does not exist"),
    ("theory --measured {binary}", "not a readable CSV"),
    ("theory --measured {text}", "needs the columns"),
    ("theory --measured {badcsv}", "line 2: not a number"),
    ("theory --out {text}", "output folder"),
    # phase ------------------------------------------------------------------------------------
    (f"{P} --act swish", "unknown activation"),
    (f"{P} --sigma-b2 -1", "--sigma-b2"),
    (f"{P} --sigma-w2 ''", "bad --sigma-w2"),
    (f"{P} --lrs ''", "bad --lrs"),
    (f"{P} --lrs 0,0.1", "bad --lrs"),
    (f"{P} --lrs log:1:0.1:3", "bad --lrs"),
    (f"{P} --sigma-w2 lin:1:4:1", "bad --sigma-w2"),
    (f"{P} --threshold 0", "--threshold must be in (0, 1)"),
    (f"{P} --threshold 1.5", "--threshold must be in (0, 1)"),
    (f"{P} --depths 4,6", "multiple of 3"),
    (f"{P} --depths ''", "bad --depths"),
    (f"{P} --width 0", "--width must be positive"),
    (f"{P} --width inf", "width multiplier"),
    (f"{P} --epochs 0", "must be positive"),
    (f"{P} --train-size 0", "must be positive"),
    (f"{P} --refine -1", "--refine"),
    (f"{P} --device tpu", "device"),
    (f"{P} --data-dir {{data}}", "missing data"),
    (f"{P} --data-dir {{corrupt}}", "checksum mismatch"),
    (f"{P} --out {{text}}", "exists and is not a folder"),
    *[(f"{P} --store {s}", m) for s, m in STORE_CASES],
    # phase --family mlp -------------------------------------------------------------------------
    (f"{PM} --width 2.5", "hidden units"),
    (f"{PM} --width 0", "hidden units"),
    (f"{PM} --steps 0", "--steps must be positive"),
    (f"{PM} --depths 0,10", "bad --depths"),
    (f"{PM} --depths x", "bad --depths"),
    (f"{PM} --sigma-w2 0,1", "bad --sigma-w2"),
    (f"{PM} --sigma-w2 lin:1:4", "bad --sigma-w2"),
    (f"{PM} --train-size 0", "--train-size must be positive"),
    (f"{PM} --threshold 1", "--threshold must be in (0, 1)"),
    (f"{PM} --act swish", "unknown activation"),
    (f"{PM} --refine 2", "--refine does not apply to --family mlp"),
    (f"{PM} --epochs 2", "--epochs does not apply to --family mlp"),
    (f"{P} --steps 10", "--steps does not apply to --family stages"),
    (f"{PM} --family cnn", "Invalid value for '--family'"),
    (f"{PM} --device tpu", "device"),
    (f"{PM} --data-dir {{data}}", "missing data"),
    (f"{PM} --out {{text}}", "exists and is not a folder"),
    *[(f"{PM} --store {s}", m) for s, m in STORE_CASES],
    # reproduce (CIFAR-10 experiments) ---------------------------------------------------------
    ("reproduce imagenet", "unknown experiment"),
    (f"{R.replace('cifar-lr-bn', 'resnet-cifar')} --n 0", "n >= 1"),
    (f"{R.replace('cifar-lr-bn', 'resnet-cifar')} --shortcut C", "shortcut"),
    (f"{R.replace('cifar-lr-bn', 'resnet-cifar')} --epochs 0", "--epochs"),
    (f"{R} --bn-impl bogus", "bn"),
    (f"{R} --dataset mnist", "not 'mnist'"),
    (f"{R} --only nope", "unknown cifar-lr-bn run"),
    (f"{R} --max-epochs 0", "--max-epochs"),
    (f"{R} --train-size 0", "--train-size"),
    (f"{R} --device tpu", "device"),
    (f"{R} --dataset cifar10 --data-dir {{data}}", "missing data"),
    (f"{R} --data-dir {{cifar_missing}}", "data_batch_3"),
    (f"{R} --data-dir {{cifar}} --out {{text}}", "exists and is not a folder"),
    (f"{R} --data-dir {{cifar}}".replace("{out}/ckpt", "{text}"), "exists and is not a folder"),
    *[(f"{R} --data-dir {{cifar}} --store {s}", m) for s, m in STORE_CASES],
]

LS = "lr-sweep cnn-tanh --depth 3 --lrs 0.01,0.1 --epochs 1 --device cpu"
LF = "lr-find cnn-tanh --depth 3 --steps 10 --device cpu"
AB = "ablate cnn-tanh --depth 3 --toggle bn --epochs 1 --device cpu"
RE = "reproduce lr-momentum --quick --device cpu"
DG = "diagnose cnn-tanh --depth 3 --steps 2 --device cpu"

CASES += [
    # train, later flags -------------------------------------------------------------------------
    (f"{T} --threads 0", "threads must be a positive integer"),
    # a DKS/TAT net where the package's target is out of reach (issue 30) --------------------------
    ("train cnn-tat-lrelu --depth 6", "at depth 6 is outside TAT's range"),
    ("frontier --models cnn-tat-lrelu --max-depth 24", "at depth 3 is outside TAT's range"),
    ("train cnn-tanh -p input_norm=none", "input_norm is for DKS/TAT activations"),
    # frontier executors -------------------------------------------------------------------------
    (f"{F} --executor slurm", "Invalid value for '--executor'"),
    (f"{F} --bisection half", "Invalid value for '--bisection'"),
    (f"{F} --plateau-stop 2", "--plateau-stop must be EPOCH:ERROR (e.g. 2:0.85), auto or off"),
    (f"{F} --plateau-stop two:0.9", "--plateau-stop must be EPOCH:ERROR"),
    (f"{F} --plateau-stop 2:0.9:1", "--plateau-stop must be EPOCH:ERROR"),
    (f"{F} --plateau-stop 0:0.9", "--plateau-stop's EPOCH must be positive"),
    (f"{F} --plateau-stop 2:0.1", "--plateau-stop's ERROR must be above the threshold (0.2)"),
    (f"{F} --plateau-stop 2:1.5", "--plateau-stop's ERROR must be above the threshold (0.2) and at most 1"),
    (f"{F} --plateau-stop nan:0.9", "--plateau-stop must be EPOCH:ERROR"),
    (f"{F} --workers 0", "workers"),
    (f"{F} --workers x", "--workers must be a positive integer or auto"),
    (f"{F} --fuse 0", "fuse"),
    (f"{F} --executor ray --cpus-per-trial 0", "cpus"),
    (f"{F} --executor ray --gpus-per-trial -1", "gpus"),
    # the same flags on the experiment commands --------------------------------------------------
    (f"{LS} --workers 0", "workers"),
    (f"{LS} --fuse x", "--fuse must be a positive integer or auto"),
    (f"{AB} --workers -2", "workers"),
    (f"{AB} --executor dask", "Invalid value for '--executor'"),
    (f"{RE} --executor ray --workers 2", "--workers is for --executor local"),
    (f"{RE} --fuse 0", "fuse"),
    # lr-sweep -----------------------------------------------------------------------------------
    ("lr-sweep cnn-nope --lrs 0.1", "unknown model"),
    ("lr-sweep cnn-tanh --depth 3", "Missing option '--lrs'"),
    ("lr-sweep cnn-tanh --depth 3 --lrs ''", "learning-rate grid is empty"),
    ("lr-sweep cnn-tanh --depth 3 --lrs 0.1,-1", "must be positive"),
    ("lr-sweep cnn-tanh --depth 3 --lrs 0.1,abc", "bad learning rate"),
    ("lr-sweep cnn-tanh --depth 3 --lrs 0.1,0.1", "twice"),
    (f"{LS} --train-size 70000 --data-dir {{mnist}}", "more than the 60,000 training images"),
    (
        "lr-sweep cifar-cnn --lrs 0.1 --epochs 1 --device cpu --train-size 100 --data-dir {cifar}",
        "more than the 40 training",
    ),
    (f"{AB} --train-size 70000 --data-dir {{mnist}}", "more than the 60,000 training images"),
    ("lr-sweep cnn-tanh --depth 10 --lrs 0.1", "multiple of 3"),
    (f"{LS} --epochs 0", "epochs must be a positive integer"),
    (f"{LS} --batch-size 0", "batch size must be a positive integer"),
    (f"{LS} --momentum 1.5", "momentum"),
    (f"{LS} --optimizer rmsprop", "unknown optimizer"),
    (f"{LS} --schedule 2@", "schedule"),
    (f"{LS} --act swish", "unknown activation"),
    (f"{LS} --dataset imagenet", "unknown dataset"),
    (f"{LS} --device tpu", "device"),
    (f"{LS} --data-dir {{data}}", "missing data"),
    (f"{LS} --data-dir {{corrupt}}", "checksum mismatch"),
    (f"{LS} --out {{text}}", "exists and is not a folder"),
    (f"{LS} --tensorboard {{text}}", "tensorboard"),
    *[(f"{LS} --store {s}", m) for s, m in STORE_CASES],
    # lr-find ------------------------------------------------------------------------------------
    ("lr-find cnn-nope", "unknown model"),
    ("lr-find cnn-tanh --depth 10", "multiple of 3"),
    (f"{LF} --min-lr 0", "--min-lr must be positive"),
    (f"{LF} --min-lr 1 --max-lr 0.1", "--max-lr must be larger than --min-lr"),
    (f"{LF} --min-lr 0.1 --max-lr 0.1", "--max-lr must be larger than --min-lr"),
    (f"{LF} --max-lr inf", "--max-lr must be larger"),
    (f"{LF} --steps 5", "--steps must be at least 10"),
    (f"{LF} --smoothing 1", "--smoothing"),
    (f"{LF} --diverge 1", "--diverge"),
    (f"{LF} --batch-size 0", "batch size"),
    (f"{LF} --momentum -1", "momentum"),
    (f"{LF} --device tpu", "device"),
    (f"{LF} --data-dir {{data}}", "missing data"),
    (f"{LF} --data-dir {{corrupt}}", "checksum mismatch"),
    (f"{LF} --out {{text}}", "exists and is not a folder"),
    # ablate -------------------------------------------------------------------------------------
    ("ablate cnn-nope --toggle bn", "unknown model"),
    ("ablate cnn-tanh --depth 3", "Missing option '--toggle'"),
    (f"{AB} --toggle nope", "unknown toggle"),
    (f"{AB} --folds 1", "--folds must be at least 2"),
    (f"{AB} --folds 0", "--folds must be at least 2"),
    (f"{AB} --folds 2 --seeds 2", "exclude each other"),
    (f"{AB} --seeds 0", "--seeds must be at least 1"),
    (f"{AB} --weight-decay -1", "--weight-decay must be non-negative"),
    (f"{AB} --l2 -1", "--weight-decay must be non-negative"),
    (f"{AB} --bn", "both fixed"),
    (f"{AB} --patience 0", "patience"),
    (f"{AB} --epochs 0", "epochs"),
    (f"{AB} --lr 0", "learning rate must be positive"),
    (f"{AB} --depth 10", "multiple of 3"),
    (f"{AB} --data-dir {{data}}", "missing data"),
    (f"{AB} --data-dir {{corrupt}}", "checksum mismatch"),
    (f"{AB} --out {{text}}", "exists and is not a folder"),
    (f"{AB} --tensorboard {{text}}", "tensorboard"),
    *[(f"{AB} --store {s}", m) for s, m in STORE_CASES],
    # reproduce (the experiment registry) --------------------------------------------------------
    ("reproduce depth-frontierz", "unknown experiment"),
    (f"{RE} --epochs 0", "--epochs must be a positive integer"),
    (f"{RE} --train-size 0", "--train-size must be a positive integer"),
    (f"{RE} --device tpu", "device"),
    (f"{RE} --data-dir {{data}}", "missing data"),
    (f"{RE} --data-dir {{corrupt}}", "checksum mismatch"),
    ("reproduce skipfc-ablation --quick --data-dir {data}", "missing data"),
    ("reproduce strided-residual --quick --data-dir {corrupt}", "checksum mismatch"),
    (f"{RE} --out {{text}}", "exists and is not a folder"),
    *[(f"{RE} --store {s}", m) for s, m in STORE_CASES],
    # diagnose -----------------------------------------------------------------------------------
    ("diagnose cnn-nope --depth 3", "unknown model"),
    ("diagnose cnn-tanh --depth 10", "multiple of 3"),
    (f"{DG} --steps -1", "--steps"),
    (f"{DG} --every 0", "--every"),
    (f"{DG} --train-size 0", "train"),
    (f"{DG} --compare-depths 4", "multiple of 3"),
    (f"{DG} --compare-depths x", "--compare-depths"),
    (f"{DG} --dataset imagenet", "unknown dataset"),
    (f"{DG} --lr 0", "learning rate must be positive"),
    (f"{DG} --batch-size 0", "batch size"),
    (f"{DG} --momentum 2", "momentum"),
    (f"{DG} --device tpu", "device"),
    (f"{DG} --data-dir {{data}}", "missing data"),
    (f"{DG} --data-dir {{corrupt}}", "checksum mismatch"),
    (f"{DG} --out {{text}}", "exists and is not a folder"),
    # --precision on every command that trains ----------------------------------------------------
    *[
        (f"{cmd} --precision fp8", "Invalid value for '--precision'")
        for cmd in (T, F, P, LS, LF, AB, RE, DG, R)
    ],
    *[(f"{cmd} --precision tf32", "tf32 needs a CUDA device") for cmd in (T, F, P, LS, LF, AB, RE, DG, R)],
    # Hardening II item 5: every numeric flag has a bound, checked before anything runs ---------
    (f"{T} --threads 100000", "threads must be at most 256"),
    (f"{T} --depth 300000000", "depth must be at most 30,000"),
    (f"{T} --depth 30000", "more than the"),  # the memory estimate, whatever the machine
    (f"{T} --seed 9223372036854775808", "seed must be an integer in [0, 2**63 - 1]"),
    (f"{T} --seed -1", "seed must be an integer in [0, 2**63 - 1]"),
    (f"{T} --epochs 100000", "epochs must be at most 10,000"),
    (f"{T} --batch-size 100000000", "batch size must be at most"),
    (f"{T} --train-size 100000000", "train size must be at most"),
    (f"{T} --lr 1e9", "learning rate must be at most"),
    (f"{T} --width 1e6", "more than the"),
    (f"{F} --evals-per-epoch 1000000000", "--evals-per-epoch must be at most 1,000"),
    (f"{F} --max-depth 300000000", "depths must be at most 30,000"),
    (f"{F} --seeds 1000000000", "--seeds must be at most 1,000"),
    (f"{F} --seed 9223372036854775808", "seed must be an integer"),
    (f"{F} --threads 100000", "--threads must be an integer from 1 to 256"),
    (f"{F} --workers 100000", "--workers must be at most 256"),
    (f"{F} --fuse 100000", "--fuse must be at most 256"),
    (f"{AB} --seeds 1000000000", "--seeds must be at most 1,000"),
    (f"{AB} --folds 1000000", "--folds must be at most 1,000"),
    (f"{LS} --threads 100000", "--threads must be an integer from 1 to 256"),
    ("theory --check-widths 1 --check-depth 3000000", "--check-depth must be at most 3,000"),
    ("theory --depth 300000000", "--depth must be at most 30,000"),
    (f"{P} --width 1e6", "more than the"),
]

CASES += [  # issue 29: every numeric flag bounded (each of these ran on, or was an internal error, before)
    (f"{DG} --steps 1000000000", "--steps must be at most 100,000, got 1,000,000,000"),
    (f"{DG} --every 5", "--every must be at most --steps (2), got 5"),
    (f"{DG} --compare-depths 3,3000000000", "--compare-depths must be at most 30,000"),
    (f"{LF} --steps 1000000000", "--steps must be at most 100,000, got 1,000,000,000"),
    (f"{LF} --max-lr 1e300", "--max-lr must be at most 1e+06"),
    (f"{LF} --diverge 1e300", "--diverge must be larger than 1 and at most 1e+06"),
    (f"{T} --weight-decay 1e300", "weight decay must be at most 1000, got 1e+300"),
    (f"{LS} --weight-decay 1e4", "weight decay must be at most 1000"),
    (f"{AB} --l2 1e300", "weight decay must be at most 1000"),
    (f"{T} --width 1e300", "width multiplier must be at most 1e+06"),
    (f"{T} --width 1e5", "more than the"),  # the width's working bound: the memory estimate
    ("summary cnn-tanh --width 1e6", "more than the"),  # was an internal error (it built the net)
    (F.replace("--lrs 0.1 ", "--lrs 0.1,1e300 "), "learning rates must be at most 1e+06, got 1e+300"),
    (f"{F} --cpus-per-trial 1e300", "--cpus-per-trial must be at most 1024"),
    (f"{F} --executor ray --gpus-per-trial 1000", "--gpus-per-trial at most 64"),
    ("theory --sigma-b2 1e300", "--sigma-b2 must be at most 100"),
    ("theory --sigma-w2 1,1e300", "values must be at most 100"),
    ("theory --width inf", "--width must be positive"),
    ("theory --check-depth -5", "--check-depth must be a multiple of 3 and at least 6, got -5"),
    ("theory --check-widths 1,1e300", "bad --check-widths '1,1e300': values must be at most 64"),
    (f"{P} --sigma-b2 1e300", "--sigma-b2 must be at most 100"),
    (f"{P} --sigma-w2 1,1e300", "values must be at most 100"),
    (f"{P} --refine 1000000000", "--refine must be from 0 to 10, got 1000000000"),
    (f"{P} --width 1e300", "width multiplier must be at most 1e+06"),
    (f"{PM} --width 1000000000", "width must be a positive integer (at most 16,384)"),
    (f"{PM} --steps 1000000000", "steps must be a non-negative integer (at most 100,000)"),
    (
        PM.replace("--depths 2,4", "--depths 2,400000000"),
        "depths must be a non-empty list of positive integers (each at most 30,000)",
    ),
    (
        "runs --store {store} --limit 100000000000000000000000",
        "--limit must be positive and at most 1,000,000,000",
    ),
]

# Commands that take --store / --data-dir / --out; the defaults below are added unless a case sets them.
CASES += [  # your own model and data (issue 21)
    ("train --model-file {nofolder}/nets.py:build --depth 3", "cannot read model file"),
    ("train --model-file {text} --depth 3", "SyntaxError"),
    ("train cnn-tanh --model-file {text}", "not both"),
    ("train --depth 3", "give a MODEL"),
    (F + " --model-file {text}", "SyntaxError"),
    ("summary --model-file {text}", "SyntaxError"),
    (T + " --dataset npz:{nofolder}/d.npz", "no such file"),
    # the npz attacks of issue 29: one line before the store is opened (no `failed` row, no MemoryError, no abort)
    (T + " --dataset npz:{npz_empty}", "empty file (0 bytes), not an .npz file"),
    (T + " --dataset npz:{npz_labels}", "labels must be 0 .. K-1 with at most 100,000 classes"),
    (T + " --dataset npz:{npz_huge}", "more than the 2.00 GiB an npz dataset may hold"),
    (F + " --dataset npz:{npz_labels}", "labels must be 0 .. K-1 with at most 100,000 classes"),
    (F + " --dataset npz:{npz_empty}", "empty file (0 bytes)"),
    ("diagnose cnn-tanh --depth 3 --steps 2 --device cpu --dataset npz:{npz_huge}", "nothing was read"),
    (
        "lr-find cnn-tanh --depth 3 --steps 10 --device cpu --dataset npz:{npz_labels}",
        "at most 100,000 classes",
    ),
    ("diagnose --model-file {text}", "SyntaxError"),
    ("diagnose cnn-tanh --model-file {nets}", "not both"),
    ("diagnose --steps 1", "give a MODEL"),
    ("diagnose --model-file {nets}:broken --steps 1", "nets.broken(depth=1) raised ValueError"),
    (
        "diagnose --model-file {nets}:upto3 --compare-depths 2,5",
        "--compare-depths 5: nets.upto3(depth=5) raised",
    ),
    ("diagnose --model-file {nets} --depth 0", "positive integer depth"),
    # which depths are valid is the factory's business; --depth-step is bounded (1 to the deepest depth)
    (f"{F} --depth-step 0", "--depth-step must be an integer from 1 to the deepest depth (6), got 0"),
    (f"{F} --depth-step 7", "--depth-step must be an integer from 1 to the deepest depth (6), got 7"),
    (f"{F} --depth-step x", "'x' is not a valid integer"),
    (f"{F} --depth-step 4", "--max-depth must be a multiple of 4"),
    (f"{F} --depth-step 2", "multiple of 3"),  # the stages family takes no depth 2
    (f"{F} --depths 3,6 --depth-step 9", "from 1 to the deepest depth (6), got 9"),
    ("frontier --model-file {nets} --max-depth 7 --depth-step 8", "from 1 to the deepest depth (7), got 8"),
    ("frontier --model-file {nets} --depths 1,2,5 --depth-step 6", "from 1 to the deepest depth (5), got 6"),
    ("frontier --model-file {nets} --depths 0,2", "depths must be positive, got 0"),
    ("frontier --model-file {nets}:stepped --max-depth 2", "--max-depth must be at least 3, got 2"),
    ("frontier --model-file {nets}:broken --max-depth 7", "nets.broken(depth=1) raised ValueError"),
]


NETS = """
from torch import nn

def build(depth):
    return nn.Sequential(nn.Flatten(), *[nn.Linear(784, 784) for _ in range(depth - 1)], nn.Linear(784, 10))

def stepped(depth):
    return build(depth)
stepped.depth_step = 3

def broken(depth):
    raise ValueError("no such net")

def upto3(depth):
    if depth > 3:
        raise ValueError("too deep")
    return build(depth)
"""


TAKES_STORE = {"train", "frontier", "phase", "reproduce", "runs", "lr-sweep", "ablate"}
TAKES_DATA = {"train", "frontier", "phase", "reproduce", "lr-sweep", "lr-find", "ablate", "diagnose"}
TAKES_OUT = {"train", "frontier", "phase", "reproduce", "theory", "lr-sweep", "lr-find", "ablate", "diagnose"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, data_root):
    """Bad data roots and bad files, made once: an empty root, MNIST with a truncated image
    file, MNIST with a gzip that is not one, CIFAR with a batch missing, a text file, an SQLite
    file that is not a store, a store with a corrupted record, a binary and a bad CSV."""
    root = tmp_path_factory.mktemp("bad")
    raw = data_root / "MNIST" / "raw"
    files = {
        "data": root / "empty",
        "nofolder": root / "no" / "such" / "folder",
        "absent": root / "absent.db",
    }
    files["data"].mkdir()
    for name, damage in (("corrupt", "truncate"), ("badgz", "gzip")):
        folder = root / name / "MNIST" / "raw"
        folder.mkdir(parents=True)
        for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            (folder / f"{stem}.gz").symlink_to(raw / f"{stem}.gz")
        if damage == "truncate":  # the real file, cut after 1,000 bytes
            with gzip.open(raw / "train-images-idx3-ubyte.gz") as fh:
                (folder / "train-images-idx3-ubyte").write_bytes(fh.read(1000))
        else:  # gzip magic, then garbage
            (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(2000))
        files[name] = root / name
    write_cifar_folder(root / "cifar" / "cifar-10-batches-py", per_batch=8)
    write_cifar_folder(root / "cifar_missing" / "cifar-10-batches-py", per_batch=8)
    (root / "cifar_missing" / "cifar-10-batches-py" / "data_batch_3").unlink()
    files["cifar"], files["cifar_missing"] = root / "cifar", root / "cifar_missing"
    files["mnist"] = data_root  # the real data, for checks that need it loaded
    files["text"] = root / "notes.txt"
    files["text"].write_text("not a store, not a folder, not a CSV of measurements\n")
    files["binary"] = root / "binary.csv"
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["badcsv"] = root / "bad.csv"
    files["badcsv"].write_text("sigma_w2,max_trainable_depth\n1.5,inf\n")
    files["sqlite"] = root / "other.db"
    con = sqlite3.connect(files["sqlite"])
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    files["corrupt_record"] = root / "corrupt-record.db"
    with Store(files["corrupt_record"]) as store:
        run_id = store.start_run({"model": "cnn-tanh", "dataset": "mnist"}, "h")
        store.finish_run(run_id, "done", seconds=1.0, result={"test_error": 0.1})
        store.conn.execute("UPDATE runs SET result = ? WHERE id = ?", ("{not json", run_id))
    files["nets"] = root / "nets.py"  # your own model factories, good and broken
    files["nets"].write_text(NETS)
    files["dir"] = root / "a-folder"
    files["dir"].mkdir()
    _write_bad_npz_files(root, files)
    return files


def _write_bad_npz_files(root: Path, files: dict) -> None:
    """The npz attacks of issue 29: an empty file, labels of 2**40, headers declaring 10**9 images."""
    import io
    import zipfile

    import numpy as np

    good = dict(
        x_train=np.zeros((20, 28, 28), np.uint8),
        y_train=np.arange(20) % 2,
        x_test=np.zeros((4, 28, 28), np.uint8),
        y_test=np.arange(4) % 2,
    )
    files["npz_empty"] = root / "empty.npz"
    files["npz_empty"].write_bytes(b"")
    files["npz_labels"] = root / "labels.npz"
    np.savez(files["npz_labels"], **{**good, "y_train": np.full(20, 2**40)})
    files["npz_huge"] = root / "huge.npz"
    with zipfile.ZipFile(files["npz_huge"], "w") as z:
        for key, value in good.items():
            shape = (10**9, *value.shape[1:]) if key.endswith("train") else value.shape
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header,
                {"shape": shape, "fortran_order": False, "descr": np.lib.format.dtype_to_descr(value.dtype)},
            )
            z.writestr(f"{key}.npy", header.getvalue() + value.tobytes())


def _fill(text: str, values: dict) -> list[str]:
    return [part.format(**values) for part in shlex.split(text)]


def _case_id(case):
    return case[0].replace(" ", "_")[:80]


@pytest.mark.parametrize("case", CASES, ids=[f"{i:03d}-{_case_id(c)}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, bad_files, tmp_path, capsys, monkeypatch):
    text, message = case
    monkeypatch.setenv("DEPTHLAB_OFFLINE", "1")  # never the network
    monkeypatch.setenv("DEPTHLAB_DATA", str(bad_files["data"]))
    monkeypatch.chdir(tmp_path)  # default output folders would appear here
    store, out = tmp_path / "store.db", tmp_path / "out"
    with Store(store) as s:  # a real store with one finished run in it
        run_id = s.start_run({"model": "cnn-tanh", "dataset": "mnist"}, "abc")
        s.finish_run(run_id, "done", seconds=1.0, result={"status": "done"})
    values = {**{k: str(v) for k, v in bad_files.items()}, "store": str(store), "out": str(out)}
    args = _fill(text, values)
    command = args[0]
    if command in TAKES_STORE and "--store" not in args:
        args += ["--store", str(store)]
    if command in TAKES_DATA and "--data-dir" not in args:
        args += ["--data-dir", str(bad_files["data"])]
    if command in TAKES_OUT and "--out" not in args:
        args += ["--out", str(out)]
    watched = [store] + [
        Path(a) for a in args if a in {str(p) for p in bad_files.values()} and Path(a).is_file()
    ]
    before = {p: _sha256(p) for p in watched}
    listing = {p: sorted(os.listdir(p.parent)) for p in watched}
    cwd_before = sorted(os.listdir(tmp_path))

    code = main(args)
    captured = capsys.readouterr()

    assert code == 2, (args, captured.err)
    assert captured.err.startswith("depthlab: error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for p in watched:  # byte-identical, and never opened (no -wal/-shm)
        assert _sha256(p) == before[p], p
        assert sorted(os.listdir(p.parent)) == listing[p], p
    assert sorted(os.listdir(tmp_path)) == cwd_before  # no output, checkpoint or default folder made
    assert not out.exists()


def test_the_table_covers_every_command():
    """A new command must come with its bad-input rows."""
    from depthlab.cli import cli

    missing = set(cli.commands) - {text.split()[0] for text, _ in CASES}
    assert not missing, f"commands without rows in the bad-input table: {sorted(missing)}"


@pytest.mark.slow
def test_real_processes_exit_2_with_one_line(bad_files, tmp_path):
    """The console entry point behaves like main(): exit status 2 and one line, in a real process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DEPTHLAB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    store = tmp_path / "s.db"
    Store(store).close()
    before = _sha256(store)
    for args, message in (
        (["train", "cnn-nope"], "unknown model"),
        (["frontier", "--threshold", "2"], "threshold"),
        (["train", "cnn-tanh", "--data-dir", str(bad_files["data"])], "missing data"),
        (["runs", "--store", str(bad_files["text"])], "not a depthlab store"),
    ):
        if "--store" not in args:
            args = args + ["--store", str(store)]
        proc = subprocess.run(
            [sys.executable, "-m", "depthlab", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("depthlab: error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr and proc.stdout == ""
    assert _sha256(store) == before and sorted(os.listdir(tmp_path)) == ["s.db"]
