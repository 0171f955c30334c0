"""wvlp.release: stage, validate and upload a release (model, dataset, Space), its model card and report.

It imports no training code: a release is made of folders the other stages wrote.
"""
