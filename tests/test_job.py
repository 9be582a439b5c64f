"""modes/job.py: user errors print one line and exit 1; every other exception is a bug and keeps its traceback."""
import pytest
import torch

from config.config import Config
from engine.training.losses import NonFiniteLossError
from modes.job import run_job
from utils.errors import UserError


def _raising(err: BaseException):
    def job(cfg, device):
        raise err
    return job


@pytest.mark.parametrize("err", [UserError("cannot open video file x.mp4"), FileNotFoundError("no such file a.png"),
                                 ValueError("--segnet: unknown kind"), NonFiniteLossError("non-finite loss (nan)")])
def test_user_errors_print_one_line(err, capsys, monkeypatch):
    monkeypatch.delenv("GSVNET_TRACEBACK", raising=False)
    assert run_job(Config(device="cpu"), _raising(err), distributed=False) == 1
    err_text = capsys.readouterr().err
    assert err_text == f"error: {err}\n"


def test_user_error_traceback_on_request(monkeypatch):
    monkeypatch.setenv("GSVNET_TRACEBACK", "1")
    with pytest.raises(UserError):
        run_job(Config(device="cpu"), _raising(UserError("bad input")), distributed=False)


def test_bugs_keep_their_traceback(monkeypatch):
    """A shape mismatch (torch's RuntimeError) is not a user error: it propagates, not a one-line exit 1."""
    monkeypatch.delenv("GSVNET_TRACEBACK", raising=False)

    def job(cfg, device):
        return torch.zeros(2, 3) @ torch.zeros(2, 3)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_job(Config(device="cpu"), job, distributed=False)
    with pytest.raises(AssertionError):
        run_job(Config(device="cpu"), _raising(AssertionError("invariant broken")), distributed=False)


def test_user_error_survives_a_dataloader_worker():
    """A worker re-raises a UserError with its own type, so the wrapper still prints it in one line."""
    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise UserError("cannot decode image file f.png")
    loader = torch.utils.data.DataLoader(Bad(), num_workers=1)
    with pytest.raises(UserError, match="cannot decode image file f.png"):
        next(iter(loader))
