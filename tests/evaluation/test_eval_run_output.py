"""What an evaluation run tells: progress lines that end with the final count (no "10 image(s) scored"
left as the last word on 12), and a report.html that holds the classical baselines given to it and a
few of the generated answers."""

from __future__ import annotations

import numpy as np

from trainer.evaluation.evaluate import EvalOptions, evaluate_condition, run_evaluation
from trainer.evaluation.predictors import ModelOutput


class Constant:
    """A predictor that says 0.5, an empty mask and a numbered answer for every image."""

    supports_perturbation = True

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, samples, images):
        outs = []
        for im in images:
            self.n += 1
            text = "" if self.n == 2 else f'{{"result": "real"}} answer number {self.n}'
            outs.append(ModelOutput(score=0.5, mask=np.zeros(im.shape[:2], np.float32), text=text))
        return outs


def test_progress_ends_with_the_final_count(tmp_path, samples_dir):
    samples_dir(tmp_path / "samples", n_fake=7, n_real=5)
    lines: list[str] = []
    records = evaluate_condition([tmp_path / "samples"], Constant(), EvalOptions(split=None, batch_size=3),
                                 progress=lines.append)
    assert len(records) == 12
    assert lines[-1] == "12 image(s) scored in all"
    assert all(line.endswith("so far") for line in lines[:-1]) and lines[:-1]


def test_report_holds_the_classical_baselines_and_generated_answers(tmp_path, samples_dir):
    samples_dir(tmp_path / "samples", n_fake=4, n_real=4)
    ela = {"image": {"balanced_accuracy": 0.625, "auc": 0.7109}, "pixel": {"f1": 0.1234, "iou": 0.0567}}
    run_evaluation([tmp_path / "samples"], Constant(), tmp_path / "eval", EvalOptions(split=None, batch_size=2),
                   baselines={"ela": ela})
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "<h2>Classical baselines</h2>" in page and "classical ela" in page
    assert all(v in page for v in ("0.625", "0.711", "0.123", "0.057"))
    assert "<h2>Generated answers</h2>" in page and "answer number 1" in page
    assert "no explanation generated" in page  # the empty answer (the second image) is said to be empty
    assert page.count("answer number") == 5  # six shown of eight: one of them the empty one
