"""The course's exercises graded: `python -m glassformer.lessons check NN` runs behaviour tests on
the functions a student wrote in lessons/exercises/NN_*.py (see lessons/README.md)."""
