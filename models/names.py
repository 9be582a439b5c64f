"""The names of the interchangeable parts of the pipeline, defined once: the flow nets and the fusions of
the non-keyframe path. No torch import, so the command-line parser (config/config.py) can offer them as
choices and stay fast."""

FLOW_NETS = ("light", "flownet")     # the paper's light flow net, FlowNetS (models/flownet.py)
FUSIONS = ("gsv", "warp", "copy")    # GSVNet, flow warp only, keyframe logits reused (models/gsvnet.py)
