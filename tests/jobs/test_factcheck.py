"""The summary fact check on hand-written (source, summary) pairs: pure logic, no model."""

import pytest

from lmdemo.jobs import factcheck
from lmdemo.jobs.factcheck import Fact

SOURCE = ("The town council of Millbrook voted on Tuesday to close the Elm Street footbridge for repairs. The work "
          "will take about ten weeks and cost 5,000 pounds a week, or 340,000 pounds in all, most of it from a "
          "regional grant. Sales at Harbor Foods rose 6 per cent, and defender Sam Okafor said the 12 million euro "
          "stadium would open in 2028.")


def flags(summary: str) -> list[str]:
    return [f.text for f in factcheck.unsupported(summary, SOURCE)]


def test_an_invented_number_is_flagged():
    assert flags("Millbrook will close the footbridge for eleven weeks at a cost of 450,000 pounds.") == [
        "eleven", "450,000"]
    assert flags("The stadium opens in 2029.") == ["2029"]
    assert flags("Harbor Foods sales rose 7%.") == ["7%"]


@pytest.mark.parametrize("summary", [
    "Repairs cost 5000 pounds a week.",  # 5,000 in the source
    "Repairs will cost $340,000 over 10 weeks.",  # ten in the source
    "Harbor Foods sales rose 6%.",  # 6 per cent
    "Harbor Foods sales rose 6 percent.",
    "The stadium will cost 12,000,000 euros.",  # 12 million
    "The stadium will cost €12m.",
])
def test_the_same_number_written_another_way_is_not_flagged(summary):
    assert flags(summary) == []


def test_names_in_the_source_are_not_flagged():
    assert flags("Millbrook council will shut the Elm Street footbridge, Sam Okafor said on Tuesday.") == []
    assert flags("The Harbor Foods chain and Okafor agree.") == []  # a part of a name, a name after "The"
    assert flags("The footbridge in Millbrook closes.") == []


def test_an_invented_name_is_flagged():
    assert flags("Mayor John Smith said the Elm Street footbridge will close.") == ["Mayor John Smith"]
    assert flags("Repairs start in Ashwood next month.") == ["Ashwood"]


def test_a_capitalised_first_word_is_not_taken_for_a_name():
    assert factcheck.names("Officials said the bridge will close. Engineers agree.") == []
    assert factcheck.names("Harbor Foods grew. The Riverside Rovers won.") == ["Harbor Foods", "Riverside Rovers"]


def test_written_numbers():
    values = [v for _, v in factcheck.numbers("forty-five staff, two hundred seats, three million euros, 2.5%")]
    assert values == [45, 200, 3_000_000, 2.5]
    assert factcheck.numbers("one of the stores") == []  # "one" alone is a pronoun more often than a figure


def test_trim_cuts_the_clause_or_drops_the_sentence():
    facts = [Fact("three", "number"), Fact("John Smith", "name")]
    two = ("Harbor Foods' sales rose 6 percent, though higher wages slowed profit growth; it plans three new stores. "
           "John Smith left.")
    assert factcheck.trim(two, facts) == "Harbor Foods' sales rose 6 percent, though higher wages slowed profit growth."
    assert factcheck.trim("John Smith opened three stores.", facts) == ""  # nothing left to keep
    assert factcheck.trim("Sales rose.", facts) == "Sales rose."


def test_a_percentage_needs_a_percentage_in_the_source():
    """Seen from the default summariser: "a 300-percent drop in profits" where the text's 300 counted jobs."""
    source = ("Coastline Electronics said profits fell eleven percent in the third quarter, and it will cut about "
              "300 jobs. Sales dropped 4 per cent.")
    assert [f.text for f in factcheck.unsupported("Coastline reported a 300-percent drop in profits.", source)] == \
        ["300-percent"]
    for faithful in ("Profits fell 11%, and about 300 jobs will go.", "Profits fell 11 percent; sales fell 4%.",
                     "Sales dropped four per cent.", "Coastline will cut 300 jobs after an 11-percent fall."):
        assert factcheck.unsupported(faithful, source) == [], faithful
