"""Train and evaluate one RecBole model on prepared atomic files; run by benchmarks/peers.py in
RecBole's own virtual environment (RecBole 1.2.1 needs numpy<2), never imported by prnn.

    python recbole_runner.py DATA_DIR DATASET MODEL SETTINGS_JSON

DATA_DIR/DATASET holds ``DATASET.train.inter``, ``DATASET.valid.inter`` and
``DATASET.test.inter``, one row per prediction (a sequence's history and its next item), as
benchmarks/peers.py writes them: RecBole then trains and tests on exactly those events (its
benchmark-file mode skips its own augmentation). Prints one JSON line: Recall@20, MRR@20
(RecBole's full ranking over all items), training seconds, training examples and peak memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> int:
    data_dir, dataset, model_name, settings = sys.argv[1:5]
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import GRU4Rec, GRU4RecF
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    config_dict = {
        "data_path": data_dir,
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "session_id",
        "ITEM_ID_FIELD": "item_id",
        # the histories' tokens are items: one id map for both (else RecBole maps them apart)
        "alias_of_item_id": ["item_id_list"],
        "TIME_FIELD": None,
        "load_col": None,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "eval_args": {"order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "MRR"],
        "topk": [20],
        "valid_metric": "MRR@20",
        "eval_step": 1000,  # no validation while training: a fixed number of epochs
        "stopping_step": 1000,
        "saved": False,
        "show_progress": False,
        "device": "cpu",
        "use_gpu": False,
        "seed": 2020,
        "reproducibility": True,
        "log_wandb": False,
        **json.loads(settings),
    }
    models = {"GRU4Rec": GRU4Rec, "GRU4RecF": GRU4RecF}
    config = Config(model=model_name, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    model = models[model_name](config, train.dataset).to(config["device"])
    trainer = Trainer(config, model)
    started = time.perf_counter()
    trainer.fit(train, valid, saved=False, show_progress=False)
    seconds = time.perf_counter() - started
    result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    print(
        json.dumps(
            {
                "recall@20": float(result["recall@20"]),
                "mrr@20": float(result["mrr@20"]),
                "train_seconds": seconds,
                "train_examples": len(train.dataset),
                "epochs": config["epochs"],
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
