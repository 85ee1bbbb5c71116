"""The care history: the insurer's reimbursement feed (`feedformat`: its format and a line's checks),
the stage that stores a feed chunk's lines (`feeds`), and a patient's history in its window (`history`)."""
