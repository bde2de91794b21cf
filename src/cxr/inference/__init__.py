"""Using a trained model: probabilities, batch prediction, explanations, export."""
