"""DaskExecutor on a real LocalCluster: same bytes as in-process, survives killed workers, cleans up.

Each test that owns a cluster starts it through the public constructor, so `shutdown` is what reaps it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, wait
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import dask
import psutil
from distributed import LocalCluster
from threadpoolctl import threadpool_limits

from icsd.core.jobs import JobOutcome, compress_job
from icsd.core.params import CompressParams, Strategy
from icsd.daemon import executor_dask
from icsd.daemon.executor_dask import DaskExecutor
from icsd.daemon.identity import content_digest
from icsd.daemon.inputs import SourceChanged, SourceFile
from icsd.daemon.output import TEMP_PREFIX
from icsd.errors import SettingsError, TransientError
from tests.harness import clean_env, sample_image, wait_until

JOB_TIMEOUT = 60.0
# Most of a second of k-means per job on one core: long enough that a kill lands mid-task.
# Slow enough (~1 s) that a test can see it running and kill its worker mid-job, whatever the quantizer's speed.
SLOW = CompressParams(strategy="sklearn-kmeans", scale=1, colors=256, seed=3)


def encode(name: str, fmt: str, *, crop: int | None = None) -> bytes:
    buffer = io.BytesIO()
    sample_image(name, crop=crop).save(buffer, format=fmt)
    return buffer.getvalue()


def in_process(data: bytes, params: CompressParams) -> JobOutcome:
    """What the process pool runs: compress_job with one BLAS/OpenMP thread."""
    with threadpool_limits(limits=1):
        return compress_job(data, params)


def comparable(outcome: JobOutcome) -> JobOutcome:
    """Everything but the wall-clock seconds."""
    assert outcome.result is not None, outcome.error
    return dataclasses.replace(outcome, result=dataclasses.replace(outcome.result, seconds=0.0))


def outcomes(futures: list[Future[JobOutcome]]) -> list[JobOutcome]:
    _, pending = wait(futures, timeout=JOB_TIMEOUT)
    assert not pending, f"{len(pending)} jobs never finished"
    return [f.result() for f in futures]


def pids_gone(pids: list[int]) -> bool:
    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(gone(pid) for pid in pids)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module executor's `state` folder (the output folder's .icsd, where it leaves its token)."""
    return tmp_path_factory.mktemp("out") / ".icsd"


@pytest.fixture(scope="module")
def executor(state: Path) -> Iterator[DaskExecutor]:
    """One two-worker LocalCluster shared by the tests that leave it running (start-up costs ~2 s)."""
    state.mkdir()
    executor = DaskExecutor("local", workers=2, state=state)
    try:
        yield executor
    finally:
        executor.shutdown(cancel=True)


CASES = [
    pytest.param("china.jpg", "JPEG", 160, CompressParams(scale=2, colors=16, seed=1), id="jpeg-kmeans"),
    pytest.param("flower.jpg", "PNG", 160, CompressParams(scale=2, colors=8, grayscale=True), id="png-gray"),
    pytest.param("flower.jpg", "JPEG", None, CompressParams(), id="full-default"),
    pytest.param(
        "china.jpg", "PNG", 200,
        CompressParams(strategy=Strategy.SKLEARN_MINIBATCH, scale=1.5, colors=32, seed=7), id="png-minibatch",
    ),
    pytest.param("china.jpg", "JPEG", 160, CompressParams(strategy=Strategy.SIZE_ONLY, scale=3), id="size-only"),
]


def test_a_worker_that_sees_the_output_folder_writes_the_spool_and_sends_no_bytes(
    executor: DaskExecutor, state: Path
) -> None:
    """Local workers find the executor's token: each output is in its spool file, durable, and comes back empty;
    without a spool path (or where a spool cannot be made) the bytes come back as before."""
    params = CompressParams(scale=2, colors=16)
    folder = state.parent / "cam"
    folder.mkdir()
    datas = [encode("china.jpg", "JPEG", crop=120 + 8 * i) for i in range(3)]
    spools = [str(folder / f"{TEMP_PREFIX}{i}") for i in range(3)]
    futures = [executor.submit(data, params, spool=spool) for data, spool in zip(datas, spools, strict=True)]
    futures.append(executor.submit(datas[0], params))  # no spool path
    (state.parent / "a-file").write_bytes(b"")  # a spool under it cannot be made
    futures.append(executor.submit(datas[0], params, spool=str(state.parent / "a-file" / f"{TEMP_PREFIX}x")))
    results = [outcome.result for outcome in outcomes(futures)]
    for data, spool, result in zip(datas, spools, results[:3], strict=True):
        assert result is not None and result.data == b""
        assert Path(spool).read_bytes() == in_process(data, params).result.data
    assert results[3] is not None and results[3].data == in_process(datas[0], params).result.data
    assert results[4] is not None and results[4].data == results[3].data  # no folder can be made there: sent back


def test_only_the_daemons_own_token_lets_a_worker_write_its_files(tmp_path: Path) -> None:
    """A worker on another machine finds no token file, or one another daemon run left at the same path: it
    must send the bytes back, never write outputs on its own disk."""
    token = executor_dask._leave_token(tmp_path)
    assert token is not None and Path(token[0]).read_text() == token[1] and len(token[1]) == 32
    assert executor_dask._sees_our_files(token)
    assert not executor_dask._sees_our_files((token[0], "another run's token"))
    assert not executor_dask._sees_our_files((str(tmp_path / "nowhere" / executor_dask.TOKEN_NAME), token[1]))
    assert not executor_dask._sees_our_files(None)
    assert executor_dask._leave_token(None) is None
    data = encode("china.jpg", "JPEG", crop=96)
    spool = tmp_path / f"{TEMP_PREFIX}a"
    (elsewhere,) = executor_dask._compress_on_worker([data], CompressParams(), [str(spool)], (token[0], "other"))
    assert isinstance(elsewhere, JobOutcome) and elsewhere.result and elsewhere.result.data and not spool.exists()
    (here,) = executor_dask._compress_on_worker([data], CompressParams(), [str(spool)], token)
    assert isinstance(here, JobOutcome) and here.result and here.result.data == b"" and spool.read_bytes()


def test_outputs_are_byte_identical_to_in_process(executor: DaskExecutor) -> None:
    jobs = [(encode(name, fmt, crop=crop), params) for name, fmt, crop, params in (c.values for c in CASES)]
    futures = [executor.submit(data, params) for data, params in jobs]
    for (data, params), outcome in zip(jobs, outcomes(futures), strict=True):
        assert comparable(outcome) == comparable(in_process(data, params))
    assert executor.healthy()


def test_bad_bytes_are_an_outcome_not_an_exception(executor: DaskExecutor) -> None:
    png = encode("china.jpg", "PNG", crop=64)
    corrupt = png[:29] + b"\0\0\0\0" + png[33:]  # header checksum broken
    (garbage, broken, cut) = outcomes([executor.submit(b"not an image at all", CompressParams()),
                                       executor.submit(corrupt, CompressParams()),
                                       executor.submit(png[:200], CompressParams())])
    for outcome in (garbage, broken, cut):
        assert outcome.result is None and outcome.error
    assert [outcome.permanent for outcome in (garbage, broken, cut)] == [True, True, False]  # cut short: retried


def test_killing_a_worker_mid_run_loses_nothing(executor: DaskExecutor) -> None:
    data = encode("china.jpg", "JPEG")
    futures = [executor.submit(data, SLOW) for _ in range(4)]
    pids = dict(executor.client.run(os.getpid))
    # Kill a worker that is running one of our tasks right now (not one that is idle).
    victim = wait_until(
        lambda: next((w for w, keys in executor.client.processing().items() if keys), None),
        timeout=JOB_TIMEOUT, what="a worker to start a task",
    )
    os.kill(pids[victim], signal.SIGKILL)

    _, pending = wait(futures, timeout=JOB_TIMEOUT)
    assert not pending, "a job hung after its worker was killed"
    failed = [f for f in futures if f.exception() is not None]
    # The scheduler re-ran the lost task elsewhere; anything it gave up on is an exception, not a hang.
    retried = [executor.submit(data, SLOW) for _ in failed]
    expected = comparable(in_process(data, SLOW))
    results = [f.result() for f in futures if f not in failed] + outcomes(retried)
    assert len(results) == len(futures)
    assert all(comparable(r) == expected for r in results)

    # The nanny restarts the worker for the tests after this one; under load it can instead close for good as it
    # restarts it (dask/distributed#7312, a race in Dask itself): then the cluster is scaled back to two workers.
    try:
        wait_until(lambda: len(executor.worker_pids()) == 2, timeout=20, what="the nanny to restart it")
    except AssertionError:
        executor._cluster.scale(2)  # type: ignore[union-attr]
        wait_until(lambda: len(executor.worker_pids()) == 2, timeout=JOB_TIMEOUT, what="a second worker")
    assert pids[victim] not in executor.worker_pids()
    assert executor.healthy()
    # The restarted worker got the local-worker setup too: Ctrl-C in our terminal does not reach it.
    assert all(executor.client.run(_ignores_sigint).values())


def _ignores_sigint() -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_task_whose_workers_keep_dying_becomes_a_transient_error() -> None:
    # allowed-failures=0: the scheduler gives up (KilledWorker) after the first death instead of the third.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        executor = DaskExecutor("local", workers=1)
    try:
        future = executor.submit(encode("china.jpg", "JPEG"), SLOW)
        (pid,) = executor.worker_pids()
        wait_until(lambda: any(executor.client.processing().values()), timeout=JOB_TIMEOUT, what="the task")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(TransientError, match="dying"):
            future.result(timeout=JOB_TIMEOUT)
    finally:
        executor.shutdown(cancel=True)


def test_shutdown_settles_every_job_and_reaps_the_workers() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    executor = DaskExecutor("local", workers=2)
    pids = executor.worker_pids()
    # multiprocessing's resource tracker, started by the first cluster of this test process, lives as long as
    # the process (run alone, this test used to wait for it to exit)
    spawned = {p.pid for p in psutil.Process().children(recursive=True) if not _resource_tracker(p)} - before
    assert set(pids) <= spawned

    futures = [executor.submit(encode("china.jpg", "JPEG"), SLOW) for _ in range(4)]
    wait_until(lambda: any(executor.client.processing().values()), timeout=JOB_TIMEOUT, what="a task")
    executor.shutdown(cancel=True)

    _, pending = wait(futures, timeout=JOB_TIMEOUT)
    assert not pending
    for future in futures:  # each one either finished in time or tells the daemon to retry it
        assert future.exception() is None or isinstance(future.exception(), TransientError)
    wait_until(lambda: pids_gone(list(spawned)), timeout=30, what="worker processes to exit")
    assert not executor.healthy()
    with pytest.raises(TransientError):
        executor.submit(b"", CompressParams())
    executor.shutdown(cancel=True)  # idempotent


def test_shutdown_without_cancel_waits_for_running_jobs() -> None:
    executor = DaskExecutor("local", workers=1)
    data = encode("flower.jpg", "JPEG", crop=160)
    future = executor.submit(data, CompressParams(scale=2))
    executor.shutdown(cancel=False)
    assert future.done()
    assert comparable(future.result()) == comparable(in_process(data, CompressParams(scale=2)))


def test_unreachable_scheduler_is_a_settings_error() -> None:
    started = time.monotonic()
    with pytest.raises(SettingsError, match=r"ICSD_DASK_SCHEDULER=tcp://127\.0\.0\.1:1: cannot reach") as info:
        DaskExecutor("tcp://127.0.0.1:1", workers=2, connect_timeout=1.0)
    assert "dask scheduler" in str(info.value)
    assert time.monotonic() - started < 15


def test_a_lost_remote_scheduler_fails_jobs_and_is_reconnected_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_dask, "RECONNECT_PAUSE", 3.0)
    port = _free_port()
    cluster = _thread_cluster(port)  # stands in for `dask scheduler` + `dask worker` on another machine
    executor = DaskExecutor(cluster.scheduler_address, workers=2, connect_timeout=1.0)
    data = encode("china.jpg", "JPEG")
    try:
        assert executor.healthy()
        running = executor.submit(data, SLOW)
        wait_until(lambda: any(executor.client.processing().values()), timeout=JOB_TIMEOUT, what="the task")
        cluster.close()
        with pytest.raises(TransientError, match="cancelled"):
            running.result(timeout=JOB_TIMEOUT)
        wait_until(lambda: executor.client.status == "closed", timeout=JOB_TIMEOUT, what="Dask to give up")
        assert not executor.healthy()

        with pytest.raises(TransientError, match="unreachable"):
            executor.submit(data, CompressParams())  # one real attempt, refused at once
        started = time.monotonic()
        with pytest.raises(TransientError, match="try again shortly"):
            executor.submit(data, CompressParams())  # then fail fast, not a blocking connect per image
        assert time.monotonic() - started < 0.5

        cluster = _thread_cluster(port)  # the scheduler is back
        future = wait_until(lambda: _submit_or_none(executor, data), timeout=JOB_TIMEOUT, what="a reconnect")
        assert future.result(timeout=JOB_TIMEOUT).result is not None
        assert executor.healthy()
    finally:
        executor.shutdown(cancel=True)
        cluster.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _thread_cluster(port: int) -> LocalCluster:
    return LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
        host="127.0.0.1", scheduler_port=port, dashboard_address="127.0.0.1:0",
    )


def _submit_or_none(executor: DaskExecutor, data: bytes) -> Future[JobOutcome] | None:
    try:
        return executor.submit(data, CompressParams())
    except TransientError:
        return None


def _resource_tracker(process: psutil.Process) -> bool:
    try:
        return any("resource_tracker" in part for part in process.cmdline())
    except psutil.Error:  # exited meanwhile
        return False


def test_small_images_travel_several_to_a_task_and_come_back_byte_identical(executor: DaskExecutor) -> None:
    from distributed import get_task_stream

    images = [encode(name, "JPEG", crop=crop) for name in ("china.jpg", "flower.jpg") for crop in range(40, 136, 16)]
    params = CompressParams(scale=2, colors=8, seed=2)
    with get_task_stream(client=executor.client) as stream:
        futures = [executor.submit(data, params, name=f"img{i}.jpg") for i, data in enumerate(images)]
        results = outcomes(futures)
    for data, outcome in zip(images, results, strict=True):
        assert comparable(outcome) == comparable(in_process(data, params))
    tasks = [t for t in stream.data if "_compress_on_worker" in str(t.get("key"))]
    assert 2 <= len(tasks) <= len(images) // 2, f"{len(tasks)} tasks for {len(images)} small images"
    assert executor.in_flight_hint == 2 * executor_dask.BATCH_IMAGES * 2


def test_a_killed_worker_is_one_warning_naming_the_image_and_the_worker(
    executor: DaskExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    data = encode("china.jpg", "JPEG")
    futures = [executor.submit(data, SLOW, name=f"cam/{i}.jpg") for i in range(2)]  # one task per worker
    pids = dict(executor.client.run(os.getpid))
    victim = wait_until(
        lambda: next((w for w, keys in executor.client.processing().items() if keys), None),
        timeout=JOB_TIMEOUT, what="a worker to start a task",
    )
    os.kill(pids[victim], signal.SIGKILL)
    outcomes(futures)  # nothing lost: the scheduler ran it again elsewhere
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and victim in r.getMessage()]
    assert len(lines) == 1, lines
    assert "was lost while running cam/" in lines[0] and "runs it again" in lines[0]
    # The nanny restarts the worker for the tests after this one; under load it can instead close for good as it
    # restarts it (dask/distributed#7312, a race in Dask itself): then the cluster is scaled back to two workers.
    try:
        wait_until(lambda: len(executor.worker_pids()) == 2, timeout=20, what="the nanny to restart it")
    except AssertionError:
        executor._cluster.scale(2)  # type: ignore[union-attr]
        wait_until(lambda: len(executor.worker_pids()) == 2, timeout=JOB_TIMEOUT, what="a second worker")


def test_a_batch_whose_worker_keeps_dying_is_split_so_only_the_culprit_pays(caplog: pytest.LogCaptureFixture) -> None:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        executor = DaskExecutor("local", workers=1)
    try:
        data = encode("china.jpg", "JPEG")
        futures = [executor.submit(data, SLOW, name=f"{i}.jpg") for i in range(2)]  # small: one task of two
        (pid,) = executor.worker_pids()
        wait_until(lambda: any(executor.client.processing().values()), timeout=JOB_TIMEOUT, what="the task")
        os.kill(pid, signal.SIGKILL)
        expected = comparable(in_process(data, SLOW))
        assert [comparable(o) for o in outcomes(futures)] == [expected, expected]
        assert any("running each of them alone" in r.getMessage() for r in caplog.records)
    finally:
        executor.shutdown(cancel=True)


def test_local_workers_read_new_inputs_themselves(executor: DaskExecutor, tmp_path: Path) -> None:
    """A local cluster's workers share the daemon's files: given a SourceFile they read and hash it, and a file
    changed since its claim is refused (SourceChanged), as in the process pool."""
    assert executor.reads_inputs
    params = CompressParams(scale=2, colors=16)
    data = encode("china.jpg", "JPEG", crop=128)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    st = path.stat()
    source = SourceFile(str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    (outcome,) = outcomes([executor.submit(source, params)])
    assert comparable(outcome) == comparable(dataclasses.replace(in_process(data, params), digest=content_digest(data)))
    path.write_bytes(data + b"more")
    with pytest.raises(SourceChanged, match="changed after it was admitted"):
        executor.submit(source, params).result(timeout=JOB_TIMEOUT)


def test_remote_workers_read_inputs_only_when_each_sees_the_daemons_files(tmp_path: Path) -> None:
    """Workers of a remote scheduler are asked once: each must find this run's token and the input folder."""
    cluster = _thread_cluster(_free_port())  # stands in for workers that share this machine's files
    state, inputs = tmp_path / "out" / ".icsd", tmp_path / "in"
    state.mkdir(parents=True)
    inputs.mkdir()
    shared = DaskExecutor(cluster.scheduler_address, workers=1, state=state, inputs=inputs)
    elsewhere = DaskExecutor(cluster.scheduler_address, workers=1, state=state, inputs=tmp_path / "not-there")
    no_token = DaskExecutor(cluster.scheduler_address, workers=1, inputs=inputs)
    try:
        assert (shared.reads_inputs, elsewhere.reads_inputs, no_token.reads_inputs) == (True, False, False)
    finally:
        for executor in (shared, elsewhere, no_token):
            executor.shutdown(cancel=True)
        cluster.close()


def test_a_worker_started_by_a_nanny_gets_glibcs_own_malloc_thresholds_back() -> None:
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which freezes glibc's mmap threshold at 128 KiB: each large
    allocation is mapped and faulted in anew. After _undo_nanny_malloc_trim, freed memory is reused."""
    code = """
import resource
from icsd.daemon.executor_dask import _undo_nanny_malloc_trim

def faults_per_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        block = bytearray(4 << 20)  # 4 MiB, zero-filled, so every page is touched
        del block
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50

frozen = faults_per_block()
_undo_nanny_malloc_trim()
faults_per_block()  # the first blocks grow the heap
print(frozen, faults_per_block())
"""
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(MALLOC_TRIM_THRESHOLD_="65536"),
                          capture_output=True, text=True, check=True)
    frozen, tuned = map(float, done.stdout.split())
    assert frozen > 500, done.stdout  # ~1,024 pages of 4 KiB faulted in per 4-MiB block
    assert tuned < 10, done.stdout
