"""Training, above every stage it trains: the CI detector (`detector`), the learned feature
codecs (`codec`) and the joint codec's feature -> image predictor (`predictor`). Each is a
`vcmbench` subcommand (`train-detector`, `train`, `train-predictor`)."""
