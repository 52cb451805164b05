from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        pass

    def predict(self, text: str = Input(description="Returned unchanged", default="hola")) -> str:
        return text
