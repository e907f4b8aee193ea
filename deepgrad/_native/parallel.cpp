// deepgrad's parallel loop for the native kernels (kernels.c: run_parts), on oneTBB.
//
// MKL's TBB threading layer keeps worker threads that wait, spinning for a while, for the next
// product. A kernel's parts handed to TBB in the same process run on those same threads, right
// after (or between) MKL's calls. A thread of deepgrad's own would instead compete with them for
// the cores (benchmarks/README.md lists what that cost). Built by parallel.py against the TBB
// headers of the `tbb-devel` package, and linked to the libtbb that MKL's layer loaded.
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

extern "C" {

typedef void (*dg_part_fn)(void *ctx, long part);

// fn(ctx, i) for every i in [0, parts), each part on one thread, at once where threads are free
void dg_parallel_for(dg_part_fn fn, void *ctx, long parts) {
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<long>(0, parts, 1),
        [fn, ctx](const oneapi::tbb::blocked_range<long> &r) {
            for (long i = r.begin(); i != r.end(); ++i) fn(ctx, i);
        },
        oneapi::tbb::static_partitioner());
}

// the threads a parallel loop may use (the calling one included)
int dg_parallel_threads(void) { return oneapi::tbb::this_task_arena::max_concurrency(); }

}  // extern "C"
