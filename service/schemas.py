"""Request and response bodies of the inference API."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# strict: `true` and "1.5" are not numbers; allow_inf_nan=False: NaN, Infinity and 1e999 are refused.
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class HousingFeatures(BaseModel):
    """One California census block group, the 8 features of the classic data set."""

    model_config = ConfigDict(extra="forbid")

    MedInc: FiniteNumber = Field(description="Median income, tens of thousands of USD", examples=[8.3252])
    HouseAge: FiniteNumber = Field(description="Median house age, years", examples=[41.0])
    AveRooms: FiniteNumber = Field(description="Average rooms per household", examples=[6.98])
    AveBedrms: FiniteNumber = Field(description="Average bedrooms per household", examples=[1.02])
    Population: FiniteNumber = Field(description="Block group population", examples=[322.0])
    AveOccup: FiniteNumber = Field(description="Average household members", examples=[2.56])
    Latitude: FiniteNumber = Field(description="Degrees north", examples=[37.88])
    Longitude: FiniteNumber = Field(description="Degrees east", examples=[-122.23])


FEATURE_NAMES: tuple[str, ...] = tuple(HousingFeatures.model_fields)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[HousingFeatures] = Field(min_length=1)


class PredictResponse(BaseModel):
    prediction: float = Field(description="Median house value, hundreds of thousands of USD")
    predicted_price_usd: float
    model_version: str


class BatchPredictResponse(BaseModel):
    predictions: list[float]
    model_version: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer. Never echoes the input, so it always serialises."""

    error: str = Field(description="Machine-readable reason, e.g. non_finite or model_not_ready")
    message: str
    details: list[dict] = Field(default_factory=list)
    request_id: str | None = None
