"""Stand-in for crewai.utilities (tests only): Printer, as the LTM storage uses it."""


class Printer:
    def print(self, content: str, color: str = "") -> None:
        print("\033[91m %s\033[00m" % content if color == "red" else content)
