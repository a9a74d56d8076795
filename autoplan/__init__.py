"""autoplan: auto-parallelism planning for large-model training.

    import autoplan
    result = autoplan.plan("llama3.1-70b", "h100-sxm-80gb", devices=512, seq_len=8192, global_batch=512)
    est = autoplan.estimate("llama3.1-70b", "h100-sxm-80gb", "tp=8,pp=4,dp=16,vpp=5,sp=1,zero=1")
"""

from autoplan.api import estimate, load_cluster, load_model, make_job, plan
from autoplan.errors import AutoplanError, ConfigError, InfeasiblePlanError
from autoplan.types import Cluster, Estimate, Job, ModelGraph, Plan, Strategy

__all__ = [
    "AutoplanError",
    "Cluster",
    "ConfigError",
    "Estimate",
    "InfeasiblePlanError",
    "Job",
    "ModelGraph",
    "Plan",
    "Strategy",
    "estimate",
    "load_cluster",
    "load_model",
    "make_job",
    "plan",
]
