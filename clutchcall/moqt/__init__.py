"""moqt"""
