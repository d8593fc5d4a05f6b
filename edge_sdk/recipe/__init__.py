"""The recipe: the pipeline of passes and exports, the budget searches, cascade export, and the result it produces."""
