"""Three LARS and three LAMB steps on a toy net, each worker on its shard, checked against the papers' rules on
the global mean gradient (tests/optimizer_rules.py). Run under horovodrun; prints one RESULT line per rank."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from optimizer_rules import check_steps
from resnet_gluon._core import dist

dist.init()
result = {"rank": dist.rank()}
for optimizer in ("lars", "lamb"):
    errors, _, final = check_steps(optimizer, trust_ratio_bn_bias=False)
    result[optimizer] = {"errors": errors, "final": {k: v.ravel().tolist() for k, v in final.items()}}
print("RESULT " + json.dumps(result), flush=True)
