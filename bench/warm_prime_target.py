"""The run bench/warm_prime.py hands to a warm runner: log one small scikit-learn model, report how long it took."""

import json
import time

if __name__ == "__main__":
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from calmops.core.registry import requirements_for

    X = np.random.default_rng(0).normal(size=(200, 5))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    signature = infer_signature(X[:5], model.predict(X[:5]))
    with mlflow.start_run():
        t = time.perf_counter()
        mlflow.sklearn.log_model(model, name="model", signature=signature, input_example=X[:5],
                                 pip_requirements=requirements_for([]))
        took = time.perf_counter() - t
    print(json.dumps({"log_model_s": took}), flush=True)
