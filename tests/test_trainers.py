"""What both trainers share (trainers.py), on stand-ins where the real thing needs a GPU."""

import types

import pytest

import errors
import trainers


def test_the_out_of_memory_hint_never_sends_vllm_users_to_4_bit():
    # The probe's advice must be something that runs: --load_in_4bit with vLLM is refused (vLLM 0.31 has no bitsandbytes).
    import torch

    class OutOfMemory(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, **batch):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    trainer = types.SimpleNamespace(model=OutOfMemory(), train_dataset=[{}],
                                    data_collator=lambda rows: {"input_ids": torch.zeros(len(rows), 4, dtype=torch.long)})
    with pytest.raises(errors.UserError) as err:
        trainers.memory_probe(trainer, 0, 8)
    message = str(err.value)
    assert "--sft_batch_size 8" in message and "\n" not in message
    assert "--load_in_4bit" not in message or "--fast_inference false" in message
