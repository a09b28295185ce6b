"""XGBoost JSON and UBJ through the executor."""


from inference.config import InputSpec, ModelConfig
from inference.frameworks import detection
from tests.inference.frameworks.common import FEATURES, _assert_equal, _run


def test_xgboost_json_and_ubj(tmp_path, tmp_path_factory, tabular):
    import xgboost
    classifier = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(tabular.x, tabular.y)
    folders = {}
    for fmt in ("json", "ubj"):
        folders[fmt] = str(tmp_path_factory.mktemp(f"xgboost_{fmt}"))
        classifier.save_model(f"{folders[fmt]}/model.{fmt}")
        assert detection.resolve(folders[fmt]) == ("xgboost", f"{folders[fmt]}/model.{fmt}")
    inputs = InputSpec(features=FEATURES)
    results = _run(tmp_path, tabular, [
        ModelConfig(name="json", uri=folders["json"], inputs=inputs,
                    options={"method": "predict_proba"}),
        ModelConfig(name="ubj", uri=folders["ubj"], inputs=inputs),
        ModelConfig(name="booster", uri=folders["ubj"], inputs=inputs,
                    options={"model_class": "booster"}),
    ])
    booster = xgboost.Booster()
    booster.load_model(f"{folders['ubj']}/model.ubj")
    _assert_equal(results["json"], {"output_0": classifier.predict_proba(tabular.x)})
    _assert_equal(results["ubj"], {"output_0": classifier.predict(tabular.x)})
    _assert_equal(results["booster"],
                  {"output_0": booster.predict(xgboost.DMatrix(tabular.x))})
