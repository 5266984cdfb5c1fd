"""VPO training of the captioner on TRL's GRPOTrainer: the frozen reasoner's correctness is the reward.

    python -m rapid_agent.rl grpo --config rl/recipes/qwen2_5_vl_7b_grpo.yaml   # stage 1: tentative solutions
    python -m rapid_agent.rl vpo --config rl/recipes/qwen2_5_vl_7b_vpo.yaml     # stage 2: VPO from stage 1

Modules: `config` (the stages' GRPOConfig subclasses), `data` (datasets to prompts), `hub` (hub datasets with image
archives), `models` (captioner in float32 masters, LoRA, built-in tiny model), `vpo` (the VPO reward: the graph's
verdict), `rewards` (the rule rewards and the registry recipes name), `caption_judge` (genuine-caption judges), `metrics`
(CSV, curves), `live_eval` (the live policy on benchmarks while it trains), `train` (`build_trainer`, `main`),
`rollouts` (what TRL's vLLM rollouts hand to vLLM), `zero3` (frozen models beside a ZeRO-3 policy), `plan` and
`sizes` (`python -m rapid_agent.rl plan`: layout and memory a GPU).
"""
