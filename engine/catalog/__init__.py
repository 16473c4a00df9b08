"""What a platform registers before it sends: categories, recipients and their segments
(who belongs to which tier, activity and interest, and the one SQL condition that selects
an audience), and API keys."""
