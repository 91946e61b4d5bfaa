# ganno: `snakemake --cores all` regenerates every figure and table of the paper into paper/.
# The rules call the `ganno` command line; no algorithm lives here. See README.md for the stages.
from snakemake.utils import min_version, validate

from ganno.config import read_config_file

min_version("9.0")

# Read by ganno first, so that a YAML error names its file and line (Snakemake's message names
# neither); a file given with --configfile is read by Snakemake before this line runs.
read_config_file("config/config.yaml")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/meta_train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/torch.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/grid_study.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
