"""Run under horovodrun: each rank contributes rank+1; prints the allreduced sum and average on rank 0."""
import horovod.mxnet as hvd
import mxnet as mx

hvd.init()
x = mx.nd.array([hvd.rank() + 1.0, 10.0 * (hvd.rank() + 1)])
total = hvd.allreduce(x, average=False, name="sum").asnumpy().tolist()
mean = hvd.allreduce(x, average=True, name="mean").asnumpy().tolist()
print(f"rank={hvd.rank()} size={hvd.size()} sum={total} mean={mean}", flush=True)
