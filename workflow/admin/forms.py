"""The console's forms. Every one carries a CSRF token (Flask-WTF); every error names the field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, DateField, EmailField, HiddenField, PasswordField, StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..roster import NAME_MAX, ROLE_MAX

_SHORT_REASON = Length(max=500, message="Keep the reason under 500 characters.")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class LoginForm(FlaskForm):
    email = EmailField("Email address",
                       [InputRequired("Enter your email address."), Length(max=320)])
    password = PasswordField("Password", [InputRequired("Enter your password."), Length(max=1024)])
    next = HiddenField()


class ReasonForm(FlaskForm):
    reason = TextAreaField("Reason", [DataRequired("Give a reason: it is kept with the record."),
                                      _SHORT_REASON], filters=[_strip])


class ExtendForm(FlaskForm):
    due = DateField("New due date", [InputRequired("Choose the new due date.")])
    reason = TextAreaField("Reason (optional)", [Optional(), _SHORT_REASON], filters=[_strip])


class StaffForm(FlaskForm):
    name = StringField("Name", [InputRequired("Enter the person's name."),
                                Length(max=NAME_MAX)])
    email = EmailField("Email address", [InputRequired("Enter the person's email address."),
                                         Length(max=320)])
    role = StringField("Role (optional)", [Optional(), Length(max=ROLE_MAX)])
    start_date = DateField("Start date (optional)", [Optional()],
                           description="New starters get their first reminder on this day.")
    active = BooleanField("Active: gets reminders", default=True)


class UploadForm(FlaskForm):
    file = FileField("Roster CSV file", [FileRequired("Choose a CSV file to upload.")])


class ApplyForm(FlaskForm):
    upload = HiddenField()
