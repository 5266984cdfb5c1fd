"""VPO training of the captioner on TRL's GRPOTrainer: the frozen reasoner's correctness is the reward."""
