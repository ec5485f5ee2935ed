"""Model corpus for tierplan: synthetic graph builders and weight-stripped real exports."""
