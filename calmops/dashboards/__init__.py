"""The Streamlit viewer."""
