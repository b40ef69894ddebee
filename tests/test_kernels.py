"""benchmarks/kernels.py: a training step's time by kind of kernel (GPU) or operator (CPU), and how busy it is."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from kernels import busy_us, device_kernels, kind_of, summarize  # noqa: E402

# names of kernels as the CUDA profiler reports them (PyTorch's and cuDNN's, shortened where they run on)
KERNELS = {
    "void at::native::vectorized_elementwise_kernel<4, at::native::sigmoid_kernel_cuda(at::TensorIteratorBase&)::"
    "{lambda()#2}::operator()() const::{lambda(float)#1}, at::detail::Array<char*, 2> >(int, ...)": "element-wise",
    "void at::native::elementwise_kernel<128, 2, at::native::gpu_kernel_impl_nocast<at::native::"
    "CUDAFunctor_add<float> >(at::TensorIteratorBase&, at::native::CUDAFunctor_add<float> const&)::"
    "{lambda(int)#1}>(int, ...)": "element-wise",
    "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::"
    "{lambda()#3}::operator()() const::{lambda(float)#1}, at::detail::Array<char*, 2>, TrivialOffsetCalculator<1, "
    "unsigned int>, c10::convert<c10::BFloat16>, at::native::memory::LoadWithCast<1>, "
    "at::native::memory::StoreWithCast<1> >(int, ...)": "cast or copy",
    "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, "
    "at::detail::Array<char*, 1> >(int, at::native::FillFunctor<float>, at::detail::Array<char*, 1>)": "fill",
    "void at::native::(anonymous namespace)::CatArrayBatchedCopy_aligned16_contig<at::native::(anonymous namespace)"
    "::OpaqueType<4u>, unsigned int, 4, 64, 64>(...)": "concatenation",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::func_wrapper_t<float, "
    "at::native::sum_functor<float, float, float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>, "
    "unsigned int, float, 4, 4> >(...)": "reduction",
    "sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nhwc_tilesize128x128x32_warpgroupsize1x1x1_g1_"
    "execute_segment_k_off_kernel__5x_cudnn": "convolution",
    "sm80_xmma_wgrad_implicit_gemm_indexed_tf32f32_tf32f32_f32_nhwckrsc_nchw_tilesize64x64x32": "convolution",
    "void cudnn::cnn::conv2d_grouped_direct_kernel<false, true, false, false, 0, 0, int, float, float, float, float, "
    "float, float>(cudnn::cnn::GroupedDirectFpropParams, cudnn::reduced_divisor, ...)": "convolution",
    "void cudnn::engines_precompiled::nchwToNhwcKernel<float, float, float, false, true, "
    "(cudnnKernelDataType_t)2>(cudnn::engines_precompiled::nchw2nhwc_params_t<float>, float const*, float*)": "layout",
    "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::"
    "TensorListMetadata<4>, at::native::(anonymous namespace)::FusedAdamMathFunctor<float, 4, "
    "(at::native::ADAM_MODE)0, false>, ...>(...)": "optimizer",
    "triton_poi_fused_add_mul_sigmoid_tanh_0": "fused (compiled)",
    "triton_per_fused_sum_3": "fused (compiled)",
    "triton_tem_fused_flex_attention_0": "attention",
    "ampere_sgemm_128x64_nn": "matrix product",
    "Memcpy DtoD (Device -> Device)": "cast or copy",
    "Memset (Device)": "fill",
    "some_kernel_of_a_library_we_do_not_know": "other",
}


@pytest.mark.parametrize(("name", "kind"), KERNELS.items(), ids=[kind for kind in KERNELS.values()])
def test_a_kernel_is_sorted_by_its_name(name, kind):
    assert kind_of(name) == kind


def test_an_operator_is_sorted_by_its_aten_name_and_other_events_are_the_hosts():
    assert kind_of("aten::mul", operator=True) == "element-wise"
    assert kind_of("aten::mkldnn_convolution", operator=True) == "convolution"
    assert kind_of("aten::convolution_backward", operator=True) == "convolution"
    assert kind_of("aten::cat", operator=True) == "concatenation"
    assert kind_of("aten::_to_copy", operator=True) == "cast or copy"
    assert kind_of("aten::empty", operator=True) == "views and allocations"
    assert kind_of("aten::bmm", operator=True) == "matrix product"
    assert kind_of("aten::_foreach_add_", operator=True) == "optimizer"
    # an autograd node's name says what it differentiates; its own time is bookkeeping, not a convolution
    assert kind_of("autograd::engine::evaluate_function: ConvolutionBackward0", operator=True) == "host"
    assert kind_of("Optimizer.step#Adam.step", operator=True) == "host"


def test_busy_time_counts_overlapping_kernels_once():
    assert busy_us([]) == 0
    assert busy_us([(0, 10), (5, 10), (20, 5)]) == 20  # two streams overlap over 5 us
    assert busy_us([(0, 10), (2, 3)]) == 10  # one inside the other
    assert busy_us([(30, 1), (0, 2)]) == 3  # any order


def test_the_device_events_of_a_chrome_trace_are_read():
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "k1", "ts": 100.5, "dur": 3.0, "pid": 0, "tid": 7},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD (Pageable -> Device)", "ts": 90, "dur": 1},
        {"ph": "X", "cat": "gpu_memset", "name": "Memset (Device)", "ts": 95, "dur": 0.5},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": 80, "dur": 4},  # the host's call
        {"ph": "X", "cat": "cpu_op", "name": "aten::mul", "ts": 70, "dur": 2},
        {"ph": "f", "cat": "ac2g", "name": "ac2g", "ts": 80},
        {"ph": "i", "name": "Iteration Start: PyTorch Profiler", "ts": 0},
    ]}
    assert device_kernels(trace) == [("k1", 100.5, 3.0), ("Memcpy HtoD (Pageable -> Device)", 90.0, 1.0),
                                     ("Memset (Device)", 95.0, 0.5)]
    assert device_kernels({}) == []


def test_a_summary_gives_each_kind_per_step_and_the_largest_names():
    items = [("sm90_xmma_fprop_x", 60.0)] * 4 + [("triton_poi_fused_0", 10.0)] * 8 + [("Memset (Device)", 5.0)] * 4
    summary = summarize(items, steps=2, step_us=250.0, busy=340.0, top=2)
    assert summary["sorted_ms"] == pytest.approx(0.17)  # 340 us over 2 steps
    assert summary["busy_share"] == pytest.approx(340 / 500)
    assert list(summary["kinds"]) == ["convolution", "fused (compiled)", "fill"]  # largest first
    assert summary["kinds"]["convolution"] == {"ms": pytest.approx(0.12), "share": pytest.approx(240 / 340),
                                               "per_step": 2}
    assert sum(k["share"] for k in summary["kinds"].values()) == pytest.approx(1)
    assert [t["name"] for t in summary["top"]] == ["sm90_xmma_fprop_x", "triton_poi_fused_0"]


def test_the_script_sorts_a_cpu_step_by_operator():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels.py"), "--size", "8", "--hidden", "2",
                             "--in-frames", "2", "--out-frames", "2", "--batch", "1", "--repeat", "1", "--json",
                             "--configs", "plain,bf16", "ms-convlstm"],
                            capture_output=True, text=True, timeout=180, env={"PATH": "", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["model"], r["config"]) for r in rows] == [("ms-convlstm", "plain"), ("ms-convlstm", "bf16")]
    for row in rows:
        assert "error" not in row, row
        assert row["profiled_with"] == "operators' self time"
        assert {"convolution", "element-wise", "host"} <= set(row["kinds"])
        assert 0 < row["sorted_ms"] <= row["step_ms"] * 1.05  # the operators' own time fits in the step
    assert rows[1]["kinds"]["cast or copy"]["per_step"] > rows[0]["kinds"]["cast or copy"]["per_step"]  # bf16 casts


def test_the_script_refuses_zero_steps():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels.py"), "--repeat", "0", "convlstm"],
                            capture_output=True, text=True, timeout=60, env={"PATH": "", "PYTHONPATH": ""})
    assert result.returncode == 2 and "--repeat must be at least 1" in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_the_kernels_of_a_recorded_clip_are_seen():
    """A recorded clip replays its kernels with one launch; the profiler must still see them, or the breakdown
    of the fast path would be empty."""
    from kernels import profile_steps

    import msrnn_zoo
    from msrnn_zoo import bench

    torch.manual_seed(0)
    device = torch.device("cuda")
    model = msrnn_zoo.create("convlstm", hidden_channels=8).to(device).train()
    frames = torch.rand(2, 6, 1, 16, 16, device=device)
    model.set_fast_path("clip-graph")
    train, _ = bench.model_steps(model, frames, torch.ones(2, 5, device=device), 3)
    bench.settle(model, train)
    train()  # recorded
    summary = profile_steps(train, device, steps=2, top=3)
    assert summary["profiled_with"] == "kernels"
    assert summary["kinds"]["convolution"]["per_step"] > 0 and summary["kinds"]["element-wise"]["per_step"] > 0
    assert 0 < summary["busy_ms"] <= summary["step_ms"] * 1.05
