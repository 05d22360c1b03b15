"""Progress a log file shows (sql_rlvr/progress.py): a line at a steady pace where stdout is not a terminal,
none for a phase shorter than the pace, and vLLM's bar counted in questions. The lines of evaluation, the
agentic mode, GRPO's pass-rate filter and --eval_steps check are asserted where those run (test_eval_files.py,
test_grpo_filter.py, test_pipeline.py)."""

from sql_rlvr.progress import ProgressBar, Report, vllm_tqdm


def test_a_log_gets_progress_lines_at_a_steady_pace_and_a_short_phase_none(capsys):
    # capsys: stdout is not a terminal, as in `python evaluate.py ... > eval.log`
    bar = ProgressBar(total=4, report=Report("[eval] syn: greedy answers", every_s=0))
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[eval] syn: greedy answers: 1/4 questions (25%), ") and "left (" in lines[0]
    assert len(lines) == 4 and lines[-1].startswith("[eval] syn: greedy answers: 4/4 questions, ") and "done in" in lines[-1]
    quiet = ProgressBar(total=4, report=Report("[eval] quiet", every_s=3600))
    quiet.update(4)
    quiet.close()
    assert capsys.readouterr().out == ""
    # vLLM's bar counts each request's n outputs: the lines count questions
    make = vllm_tqdm(Report("[eval] sampled", every_s=0), per_request=3)
    vllm_bar = make(total=2, desc="Processed prompts", dynamic_ncols=True, postfix="speed")
    vllm_bar.update(3)
    vllm_bar.close()
    assert capsys.readouterr().out.splitlines()[0].startswith("[eval] sampled: 1/2 questions (50%)")
    assert vllm_tqdm(None) is False


