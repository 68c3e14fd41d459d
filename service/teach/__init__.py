"""Teaching a served model: taught examples, fine-tune jobs in their own process, the quality gate, rollback."""
