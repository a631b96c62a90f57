"""Purifiers that hold against an attacker who knows them: end-to-end adversarial fine-tuning of a bundle's
purifier against its frozen classifier (train), and evaluation to AutoAttack's standard (evaluate)."""
