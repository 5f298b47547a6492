"""Evaluation of trained models beyond their training loss, one module per
kind of measure (`word_similarity`: word-vector similarity and analogies)."""
